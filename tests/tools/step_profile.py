"""Where an engine's and a worker's CPU goes under load, by layer:
``python -m tests.tools.step_profile [CHAINS] [SECONDS]``.

Needs py-spy (``pip install py-spy``; not a dependency of ackflow). Starts one engine and one
worker process as `make bench` does, submits CHAINS (default 600) ten-step chains at once,
samples both processes with py-spy for SECONDS (default 6) while they work, and prints the
share of each process's busy samples by the layer of the innermost frame: ackflow's own code,
redis-py, amqp/kombu, msgpack, the thread machinery, the rest. Samples of threads blocked
waiting (an idle pool thread, a heartbeat thread's wait) are left out. Figures, not tests.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

# py-spy names a frame "function (path:line)", the path relative to its import root.
LAYERS = (
    ("redis-py", ("(redis/",)),
    ("amqp/kombu", ("(amqp/", "(kombu/", "(runner/broker/")),
    ("msgpack", ("(msgpack/",)),
    ("ackflow", ("(runner/", "(workers/")),
    ("threads", ("(threading.py", "(concurrent/", "(queue.py")),
)
# Innermost frames of a thread that waits for work rather than doing it.
IDLE = re.compile(r"^(_worker \(concurrent/futures/thread\.py|(\w+\.)?wait \(threading\.py)")


def layer(frame: str) -> str:
    """The layer of a frame; ackflow's broker adapter counts as the AMQP layer it drives."""
    for name, marks in LAYERS:
        if any(m in frame for m in marks):
            return name
    return "other"


def shares(raw: str) -> tuple[int, dict[str, float], list[tuple[str, float]]]:
    """Busy samples, their share by layer, and the top innermost functions, of py-spy's raw
    (collapsed) output."""
    by_layer: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        if IDLE.match(leaf) or leaf.startswith(("select (", "poll (")):
            continue
        by_layer[layer(leaf)] += int(count)
        by_leaf[re.sub(r":\d+\)", ")", leaf)] += int(count)
    busy = sum(by_layer.values()) or 1
    top = [(k, v / busy) for k, v in by_leaf.most_common(8)]
    return busy, {k: v / busy for k, v in by_layer.items()}, top


def main() -> None:
    chains = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    seconds = sys.argv[2] if len(sys.argv) > 2 else "6"
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        sys.exit("needs py-spy: pip install py-spy")
    from runner.client import Client
    from runner.config import Config
    from runner.examples.noop import chain
    from runner.ops.bench.procs import Cluster, cleanup

    cfg = Config.from_env().with_(prefix=f"profile-{uuid.uuid4().hex[:6]}")
    cluster = Cluster(cfg, 1, 1)
    client = Client.from_config(cfg)
    out = tempfile.mkdtemp(prefix="ackflow-profile-")
    kinds = {"engine": cluster.engines[0].pid, "worker": cluster.workers[0].pid}
    try:
        flow = chain(10).compile()
        client.wait(client.submit(flow, {"v0": 0}), 120)
        ids = [client.submit(flow, {"v0": i}) for i in range(chains)]
        spies = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "-r",
                    "500",
                    "-d",
                    seconds,
                    "-f",
                    "raw",
                    "-o",
                    f"{out}/{k}.txt",
                    "-p",
                    str(pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for k, pid in kinds.items()
        ]
        for s in spies:
            s.wait()
        for rid in ids:
            client.wait(rid, 600)
    finally:
        client.close()
        cluster.close()
        cleanup(cfg)
    for kind in kinds:
        with open(f"{out}/{kind}.txt") as f:
            busy, by_layer, top = shares(f.read())
        print(f"\n{kind}: {busy} busy samples, by layer of the innermost frame")
        for name, share in sorted(by_layer.items(), key=lambda kv: -kv[1]):
            print(f"  {name:12} {100 * share:5.1f}%")
        print("  innermost functions:")
        for name, share in top:
            print(f"    {100 * share:5.1f}% {name[:110]}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
