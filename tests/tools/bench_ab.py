"""Compare two checkouts' speed side by side: ``python -m tests.tools.bench_ab BEFORE AFTER [ROUNDS]``.

Each argument is a checkout with its own ``.venv`` (``make venv``). Rounds alternate between the
two (ABBA order) so a noisy, shared machine slows both alike; each round runs the bench's own
workloads from that checkout's ``bench`` module against the configured RabbitMQ and Redis:
100 ten-step chains (1 engine + 1 worker), 20 fan-outs of 100, and 100 chains in local mode.
Prints the medians and after/before ratios. No assertion: figures, not tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROUND = """
import functools, importlib, json
from runner.config import Config
from runner.examples.noop import chain, fanout
try:
    bench = importlib.import_module("runner.ops.bench")
except ImportError:  # a checkout from before the layout
    bench = importlib.import_module("runner.bench")
cfg = Config.from_env()
c = bench.distributed(cfg, lambda: chain(10), 100, 10)
f = bench.distributed(cfg, functools.partial(fanout, 100), 20, 102)
print(json.dumps({
    "chains steps/s (1+1)": c["steps_per_s"],
    "chains p50 ms": c["p50_ms"],
    "fan-out W=100 steps/s": f["steps_per_s"],
    "local mode steps/s": bench.local_mode(100),
}))
"""


def one_round(tree: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "ACKFLOW_LOG_LEVEL": "warning"}
    out = subprocess.run(
        [str(tree / ".venv" / "bin" / "python"), "-c", ROUND],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode:
        sys.exit(f"{tree}: round failed\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    trees = {"before": Path(sys.argv[1]).resolve(), "after": Path(sys.argv[2]).resolve()}
    rounds = int(sys.argv[3]) if len(sys.argv) == 4 else 5
    results: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for r in range(rounds):
        for name in list(trees) if r % 2 == 0 else list(reversed(trees)):
            results[name].append(one_round(trees[name]))
            print(f"round {r + 1} {name}: {results[name][-1]}", flush=True)
    print(f"\n{'case':<26} {'before':>12} {'after':>12}  after/before")
    for k in results["before"][0]:
        b = statistics.median(x[k] for x in results["before"])
        a = statistics.median(x[k] for x in results["after"])
        print(f"{k:<26} {b:>12,.1f} {a:>12,.1f}  {a / b:.3f}")


if __name__ == "__main__":
    main()
