"""CPU per step of an engine and a worker, two checkouts side by side:
``python -m tests.tools.cpu_ab BEFORE AFTER [ROUNDS] [CHAINS]``.

Each argument is a checkout with its own ``.venv``. Rounds alternate (ABBA); each starts one
engine and one worker of that checkout, runs CHAINS (default 200) ten-step chains, and reads
the processes' CPU time from /proc around them. CPU per step moves less than throughput on a
shared machine, so it is the figure to quote for a change to the engine or worker. Prints
medians and after/before ratios; figures, not tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

ROUND = """
import json, os, sys, time, uuid
from runner.client import Client
from runner.config import Config
from runner.examples.noop import chain
try:
    from runner.ops.bench import Cluster
except ImportError:
    from runner.ops.bench.procs import Cluster
cfg = Config.from_env().with_(prefix=f"cpuab-{uuid.uuid4().hex[:6]}")
cluster = Cluster(cfg, 1, 1)
client = Client.from_config(cfg)
n = int(sys.argv[1])
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
procs = (("engine", cluster.engines[0]), ("worker", cluster.workers[0]))
try:
    flow = chain(10).compile()
    client.wait(client.submit(flow, {"v0": 0}), 120)
    c0 = {r: cpu(p.pid) for r, p in procs}
    t = time.perf_counter()
    for rid in [client.submit(flow, {"v0": i}) for i in range(n)]:
        assert client.wait(rid, 600).status == "SUCCESS"
    el = time.perf_counter() - t
    c1 = {r: cpu(p.pid) for r, p in procs}
    print(json.dumps({"steps/s": n * 10 / el, **{f"{r} ms/step": 1000 * (c1[r] - c0[r]) / (n * 10) for r in c0}}))
finally:
    client.close()
    cluster.close()
"""


def main() -> None:
    if len(sys.argv) not in (3, 4, 5):
        sys.exit(__doc__)
    trees = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    chains = sys.argv[4] if len(sys.argv) > 4 else "200"
    results: list[list[dict[str, float]]] = [[], []]  # before, after (the same tree twice: A/A)
    for r in range(rounds):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            tree = trees[k]
            env = {**os.environ, "PYTHONPATH": tree, "ACKFLOW_LOG_LEVEL": "warning"}
            out = subprocess.run(
                [f"{tree}/.venv/bin/python", "-c", ROUND, chains],
                cwd=tree, env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            if out.returncode:
                sys.exit(f"{tree}: round failed\n{out.stderr[-3000:]}")
            results[k].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {('before', 'after')[k]}: {results[k][-1]}", flush=True)
    before, after = results
    print(f"\n{'':16} {'before':>10} {'after':>10}  after/before")
    for k in before[0]:
        b, a = statistics.median(x[k] for x in before), statistics.median(x[k] for x in after)
        print(f"{k:16} {b:10.3f} {a:10.3f}  {a / b:.3f}")


if __name__ == "__main__":
    main()
