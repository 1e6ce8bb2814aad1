"""`make sim-mutants`: does the simulator find the planted bugs of tests/mutants/table.py?

Each mutant the simulator can see (it runs the engine, the worker, the decisions and the
memory store — not the Lua scripts or the Redis adapter) is applied alone to a copy of the
tree (`tests.mutants.run.copy_tree`, the checkout is never touched), and the simulator runs
there over a fixed budget of seeds — seeds 1, 2, … up to ``SIM_MUTANT_SEEDS`` (default
2500) — stopping at the first seed that breaks a check. The unmutated copy first runs the
whole budget and must break none. Prints mutant -> first failing seed (and the check it
broke), or MISSED; exits 1 if any of the issue's named mutants is missed.

    python -m tests.sim.mutants              # every visible mutant, SIM_MUTANT_JOBS (2) at a time
    python -m tests.sim.mutants M3 M4        # some
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tests.mutants.run import copy_tree, plant
from tests.mutants.table import MUTANTS, Mutant

# The Lua scripts and the Redis adapter: only the Redis-backed simulator store runs them
# (SIM_STORE=redis, tests/sim/redis_store.py), slower, so over SIM_MUTANT_REDIS_SEEDS seeds.
IN_REDIS = ("runner/store/lua/", "runner/store/redis")
# The list: ack before confirm, mark sent before confirm, skip the applied-event check,
# revert a predecessor before its active successor, accept a stale attempt's result, drop a
# timer on claim. A miss of one of these fails the target.
REQUIRED = ("M3", "M4", "M8", "M15", "M22", "M34")
FIRST_SEED = 1
TIMEOUT_S = 240


def in_redis(m: Mutant | None) -> bool:
    return m is not None and m.file.startswith(IN_REDIS)


def run_one(m: Mutant | None, seeds: int, store: str = "") -> tuple[str, float, str]:
    """(mutant id, seconds, verdict) — the verdict is "" when no seed failed."""
    started = time.monotonic()
    copy = copy_tree()
    try:
        if m is not None:
            plant(copy, m)
        report = copy / "sim-report.json"
        cmd = [
            sys.executable,
            *("-m", "tests.sim", "--quiet", "--stop-on-first", "--report", str(report)),
            *("--seeds", ",".join(str(FIRST_SEED + i) for i in range(seeds))),
        ]
        env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
        env["SIM_STORE"] = store or ("redis" if in_redis(m) else "memory")
        try:
            p = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return (m.id if m else "M0"), time.monotonic() - started, "(hung)"
        name = m.id if m else "M0"
        if p.returncode == 0:
            return name, time.monotonic() - started, ""
        if not report.exists():  # the simulator itself failed: the mutant broke it outright
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
            return name, time.monotonic() - started, f"(simulator failed: {tail[0][:100]})"
        v = json.loads(report.read_text())["violations"][0]
        return name, time.monotonic() - started, f"seed {v['seed']}: {v['violations'][0][:90]}"
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str]) -> int:
    seeds = int(os.environ.get("SIM_MUTANT_SEEDS", "2500"))
    redis_seeds = int(os.environ.get("SIM_MUTANT_REDIS_SEEDS", "150"))
    jobs = max(1, int(os.environ.get("SIM_MUTANT_JOBS", "2")))
    wanted = set(argv)
    chosen = [m for m in MUTANTS if (not wanted or m.id in wanted)]
    started = time.monotonic()
    print(
        f"sim-mutants: budget {seeds} seeds each (seeds {FIRST_SEED}..{FIRST_SEED + seeds - 1}); "
        f"{redis_seeds} for the Lua / Redis-adapter mutants, run on the Redis-backed store",
        flush=True,
    )
    _, secs, verdict = run_one(None, seeds)
    if verdict:
        print(f"the unmutated tree fails the simulator: {verdict}", file=sys.stderr)
        return 2
    print(f"baseline: no violation in {seeds} seeds ({secs:.0f} s)", flush=True)
    if any(in_redis(m) for m in chosen):
        _, secs, verdict = run_one(None, redis_seeds, "redis")
        if verdict:
            print(f"the unmutated tree fails the Redis-backed simulator: {verdict}", file=sys.stderr)
            return 2
        print(
            f"baseline (Redis-backed store): no violation in {redis_seeds} seeds ({secs:.0f} s)", flush=True
        )
    results: dict[str, tuple[float, str]] = {}
    with ThreadPoolExecutor(jobs) as pool:
        for mid, secs, verdict in pool.map(
            lambda m: run_one(m, redis_seeds if in_redis(m) else seeds), chosen
        ):
            results[mid] = (secs, verdict)
            print(f"  {mid:<4} {verdict or 'MISSED'} ({secs:.0f} s)", flush=True)
    print()
    for m in chosen:
        secs, verdict = results[m.id]
        print(f"{m.id:<4} {m.what[:70]:<70}  {verdict or 'MISSED'}")
    found = sum(1 for _, v in results.values() if v)
    total = time.monotonic() - started
    print(f"\n{found} of {len(results)} mutants found; total {total:.0f} s ({total / 60:.1f} min)")
    missed = [mid for mid in REQUIRED if mid in results and not results[mid][1]]
    if missed:
        print(f"MISSED required: {' '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
