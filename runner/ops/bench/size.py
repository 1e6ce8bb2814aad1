"""Cost independent of run size: one flow of 10, 1,000 and 10,000 tasks (a chain, and one map
over that many items) on its own, steps/s from submit to result, and the Redis memory its run
keys take per task state (``MEMORY USAGE`` of every key of the run, divided by its tasks).
Also process memory growth over many small runs (`footprint`)."""

from __future__ import annotations

import time
from typing import Any

from runner.client import Client
from runner.config import Config
from runner.connect import open_store
from runner.examples.noop import chain
from runner.ops.bench.ackflow_runs import mapped
from runner.ops.bench.cpu import Meter
from runner.ops.bench.procs import Cluster, cleanup, client, fresh
from runner.store import keys


def run_bytes(cfg: Config, run_ids: list[str]) -> int:
    """Bytes Redis holds for these runs' keys."""
    store = open_store(cfg)
    try:
        r = store.client
        return sum(
            int(r.memory_usage(keys.run_key(cfg.prefix, rid, p)) or 0)
            for rid in run_ids
            for p in keys.RUN_PARTS
        )
    finally:
        store.close()


def one_flow(cluster: Cluster, cli: Client, shape: str, n: int) -> dict[str, Any]:
    """One run of ``n`` tasks alone on the cluster: steps/s, bytes per task state, CPU."""
    inputs: dict[str, Any]
    if shape == "chain":
        spec, inputs = chain(n).compile(), {"v0": 0}
    else:
        spec, inputs = mapped(n).compile(), {"items": list(range(n))}
    meter = Meter(cluster.pids())
    meter.start()
    start = time.perf_counter()
    rid = cli.submit(spec, inputs)
    info = cli.wait(rid, 900)
    elapsed = time.perf_counter() - start
    assert info.status == "SUCCESS", info
    return {
        "steps_per_s": n / elapsed,
        "bytes_per_task": run_bytes(cluster.cfg, [rid]) / n,
        "cpu_per_1000": meter.per_1000(n),
    }


def size_independence(cluster: Cluster, cli: Client, sizes: tuple[int, ...]) -> dict[str, Any]:
    """`one_flow` for each shape and size, and per shape the ratio of the largest's steps/s
    to the smallest's (target: at least 0.8)."""
    cli.wait(cli.submit(chain(10).compile(), {"v0": 0}), 120)  # warm
    out: dict[str, Any] = {}
    for shape in ("chain", "map"):
        by_size = {n: one_flow(cluster, cli, shape, n) for n in sizes}
        out[shape] = {
            "sizes": {str(n): v for n, v in by_size.items()},
            "largest_over_smallest": by_size[max(sizes)]["steps_per_s"] / by_size[min(sizes)]["steps_per_s"],
        }
    return out


def footprint(base: Config, runs: int) -> dict[str, float]:
    """Redis bytes per finished task state of 10-step chains (small results), and the engine's
    and worker's RSS after ``runs`` one-step runs compared with after a tenth of them."""
    cfg = fresh(base)
    cluster = Cluster(cfg)
    cli = client(cfg)
    try:
        spec = chain(1).compile()
        rss: list[dict[str, float]] = []
        for part in range(2):
            n = runs // 10 if part == 0 else runs - runs // 10
            batch = [cli.submit(spec, {"v0": i}) for i in range(n)]
            for rid in batch:
                cli.wait(rid, 300)
            rss.append(cluster.rss_mb())
        ten = [cli.submit(chain(10).compile(), {"v0": i}) for i in range(20)]
        for rid in ten:
            cli.wait(rid, 120)
        return {
            "redis_bytes_per_task_state": run_bytes(cfg, ten) / (len(ten) * 10),
            "engine_rss_mb": rss[1]["engine0"],
            "engine_rss_growth": rss[1]["engine0"] / rss[0]["engine0"],
            "worker_rss_mb": rss[1]["worker0"],
            "worker_rss_growth": rss[1]["worker0"] / rss[0]["worker0"],
        }
    finally:
        cli.close()
        cluster.close()
        cleanup(cfg)
