"""The simulator's command line.

    python -m tests.sim                        # SIM_SECONDS (600) of seeds from SIM_SEED (random)
    python -m tests.sim --replay 1234          # one seed: workload, faults, outcome, shrunk faults
    python -m tests.sim --replay 1234 --faults 'crash@3:E0=12,duplicate@40=2'   # a given schedule

Writes sim-report.json (``--report``) and prints a table; exits 1 if any seed broke a check.
Python's string hashing is pinned (PYTHONHASHSEED=0: the process re-executes itself if it is
not), so a seed replays the same schedule in any process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys

from tests.sim.run import parse_faults, replay, soak


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":  # set iteration order must not vary by process
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(
            sys.executable, [sys.executable, "-m", "tests.sim", *(sys.argv[1:] if argv is None else argv)]
        )
    ap = argparse.ArgumentParser(prog="python -m tests.sim")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SIM_SECONDS", "600")))
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: SIM_SEED, else random)")
    ap.add_argument("--seeds", default="", help="a fixed comma-separated list of seeds instead")
    ap.add_argument("--replay", type=int, default=None, help="replay one seed and explain it")
    ap.add_argument("--faults", default=None, help="with --replay: this fault list instead of the seed's")
    ap.add_argument("--report", default="sim-report.json")
    ap.add_argument("--quiet", action="store_true", help="no table, one summary line")
    ap.add_argument("--stop-on-first", action="store_true", help="stop at the first failing seed")
    args = ap.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the engines' warnings about injected faults are noise here
    if args.replay is not None:
        faults = parse_faults(args.faults) if args.faults is not None else None
        return replay(args.replay, faults)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        first = seeds[0]
    else:
        env = os.environ.get("SIM_SEED", "")
        first = (
            args.seed
            if args.seed is not None
            else int(env)
            if env
            else random.SystemRandom().randrange(10**9)
        )
        seeds = []
    print(f"sim: first seed {first} (replay one: SIM_SEED=<seed> make sim-replay)", flush=True)
    report = soak(first, args.seconds, seeds or None, stop_on_first=args.stop_on_first)
    with open(args.report, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    if args.quiet:
        print(
            f"sim: {report['seeds']['count']} seeds, {report['task_steps']} task steps, "
            f"{len(report['violations'])} violations"
        )
    else:
        print_table(report)
    return 1 if report["violations"] else 0


def print_table(report: dict[str, object]) -> None:
    rows = [
        ("seeds", f"{report['seeds']['count']} (from {report['seeds']['first']})"),  # type: ignore[index]
        ("runs", report["runs"]),
        ("task steps", report["task_steps"]),
        ("task steps / minute", report["task_steps_per_minute"]),
        ("scheduler steps", report["scheduler_steps"]),
        ("seconds", report["seconds"]),
    ]
    rows += [(f"faults: {k}", v) for k, v in sorted(report["faults"].items())]  # type: ignore[attr-defined]
    rows.append(("violations", len(report["violations"])))  # type: ignore[arg-type]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for v in report["violations"]:  # type: ignore[attr-defined]
        print(f"VIOLATION seed {v['seed']}: {'; '.join(v['violations'])}")
        print(f"  replay: {v['replay']}")
        print(f"  shrunk faults: {v['shrunk_replay']}")


if __name__ == "__main__":
    sys.exit(main())
