"""Seeds in a loop (`soak`), one seed explained (`replay`), and the shrinker (`shrink`)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.sim.checker import violations
from tests.sim.simulate import Fault, Sim, simulate
from tests.sim.workloads import generate

MAX_SHRINK_TRIES = 200


def replay_command(seed: int, faults: list[Fault] | None = None) -> str:
    if faults is None:
        return f"SIM_SEED={seed} make sim-replay"
    return f"python -m tests.sim --replay {seed} --faults '{format_faults(faults)}'"


def format_faults(faults: list[Fault]) -> str:
    return ",".join(f.describe() for f in faults)


def parse_faults(text: str) -> list[Fault]:
    """The inverse of `format_faults`: ``kind@step[:target]=arg`` items, comma-separated."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        head, arg = item.rsplit("=", 1)
        kind, rest = head.split("@", 1)
        step, _, target = rest.partition(":")
        out.append(Fault(int(step), kind, target, int(arg)))
    return sorted(out, key=lambda f: (f.step, f.kind, f.target, f.arg))


def check(seed: int, faults: list[Fault] | None = None) -> tuple[list[str], list[Fault], int, int]:
    """(violations, faults used, task steps of both simulations, scheduler steps) of a seed."""
    base, out, used = simulate(seed, faults)
    return violations(base, out), used, base.task_steps + out.task_steps, base.steps + out.steps


def shrink(seed: int, faults: list[Fault]) -> list[Fault]:
    """Drop faults one at a time, keeping each drop after which the seed still fails."""
    kept = list(faults)
    tries = 0
    changed = True
    while changed and tries < MAX_SHRINK_TRIES:
        changed = False
        for i in range(len(kept)):
            tries += 1
            candidate = kept[:i] + kept[i + 1 :]
            if check(seed, candidate)[0]:
                kept = candidate
                changed = True
                break
    return kept


def soak(
    first: int, seconds: float, seeds: list[int] | None = None, stop_on_first: bool = False
) -> dict[str, Any]:
    """Seeds ``first``, ``first + 1``, … until ``seconds`` pass (or exactly ``seeds``)."""
    started = time.monotonic()
    found: list[dict[str, Any]] = []
    faults: Counter[str] = Counter()
    task_steps = sched_steps = runs = n = 0
    todo = iter(seeds) if seeds is not None else None
    seed = first
    while True:
        if todo is not None:
            nxt = next(todo, None)
            if nxt is None:
                break
            seed = nxt
        elif time.monotonic() - started >= seconds and n:
            break
        base, out, used = simulate(seed)
        bad = violations(base, out)
        n += 1
        runs += len(out.runs)
        task_steps += base.task_steps + out.task_steps
        sched_steps += base.steps + out.steps
        faults.update(out.faults)
        if bad:
            shrunk = used if stop_on_first else shrink(seed, used)  # the first is enough there
            found.append(
                {
                    "seed": seed,
                    "violations": bad,
                    "faults": format_faults(used),
                    "shrunk_faults": format_faults(shrunk),
                    "replay": replay_command(seed),
                    "shrunk_replay": replay_command(seed, shrunk),
                }
            )
            print(f"VIOLATION seed {seed}: {'; '.join(bad)}\n  replay: {replay_command(seed)}", flush=True)
            if stop_on_first:
                break
        if todo is None:
            seed += 1
    elapsed = time.monotonic() - started
    return {
        "seeds": {"first": first, "count": n, "last": seed if todo is None else (seeds or [first])[-1]},
        "runs": runs,
        "task_steps": task_steps,
        "scheduler_steps": sched_steps,
        "seconds": round(elapsed, 1),
        "task_steps_per_minute": int(task_steps / elapsed * 60) if elapsed else 0,
        "faults": dict(sorted(faults.items())),
        "violations": found,
    }


def replay(seed: int, faults: list[Fault] | None = None) -> int:
    """Run one seed and say what happened; 1 if it broke a check."""
    workload = generate(__import__("random").Random(f"workload:{seed}"))
    base, out, used = simulate(seed, faults)
    bad = violations(base, out)
    print(f"seed {seed}: flows {workload.describe()}")
    print(f"faults ({len(used)}): {format_faults(used) or '-'}")
    print(f"struck: {dict(sorted(out.faults.items()))}")
    for rid, (status, result) in out.runs.items():
        print(f"  {rid}: {status} {result}   (fault-free: {base.runs.get(rid)})")
    print(f"steps {out.steps} (fault-free {base.steps}), task steps {out.task_steps}")
    if not bad:
        print("no violation")
        return 0
    for v in bad:
        print(f"VIOLATION: {v}")
    shrunk = shrink(seed, used)
    print(f"shrunk to {len(shrunk)} of {len(used)} faults: {replay_command(seed, shrunk)}")
    return 1


__all__ = ["Sim", "check", "parse_faults", "replay", "shrink", "soak"]
