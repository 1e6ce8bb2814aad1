"""ackflow's side of each workload: many runs at once on engine and worker processes, one run
at a time in local mode, and the idle latency of one chain. Each returns steps/s (and
latencies) with the CPU each kind of process spent per 1,000 steps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from runner import flow
from runner.client import Client, HistoryEntry
from runner.config import Config
from runner.examples.noop import chain, join, noop
from runner.ops.bench.cpu import Meter
from runner.ops.bench.procs import Cluster, cleanup, client, fresh


def chord(width: int) -> flow.Flow:
    """Celery's chord: ``width`` no-op tasks at once, then one that takes all their results."""
    leaves = [noop.bind(f"leaf{i}", rebind={"x": "v0"}, provides=f"r{i}") for i in range(width)]
    return flow.linear(
        f"bench_chord{width}",
        flow.unordered("leaves", *leaves),
        join.bind("join", requires=[f"r{i}" for i in range(width)]),
    )


def mapped(width: int) -> flow.Flow:
    """One map task over ``width`` items (all at once), then nothing: a flow of ``width`` tasks."""
    return flow.linear(
        f"bench_map{width}",
        flow.map(noop.bind("each", requires=["x"]), over="items", into="x", provides="outs", limit=0),
    )


def finished_at(history: list[HistoryEntry]) -> float:
    """When the engine applied the run's final transition (ms)."""
    done = [h for h in history if h.scope == "run" and h.new == "SUCCESS" and h.old != h.new]
    if not done or "t" not in done[-1].extra:
        raise AssertionError(f"no applied final transition in the history: {history[-3:]}")
    return float(done[-1].extra["t"])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def batch(
    cluster: Cluster, cli: Client, spec: Any, runs: int, steps_per_run: int, inputs: Callable[[int], Any]
) -> dict[str, Any]:
    """Submit ``runs`` at once on a running cluster, wait for all: steps/s, run latency from the
    submit's return to the engine applying the run's last result (history ``t``), and CPU."""
    cli.wait(cli.submit(spec, inputs(0)), 120)  # the flow registered, the processes warm
    meter = Meter(cluster.pids())
    meter.start()
    start = time.perf_counter()
    submitted = {cli.submit(spec, inputs(i)): time.time() for i in range(runs)}
    for rid in submitted:
        info = cli.wait(rid, 600)
        assert info.status == "SUCCESS", info
    elapsed = time.perf_counter() - start
    cpu = meter.per_1000(runs * steps_per_run)
    latencies = [finished_at(cli.history(rid)) / 1000 - at for rid, at in submitted.items()]
    return {
        "steps_per_s": runs * steps_per_run / elapsed,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "cpu_per_1000": cpu,
    }


def distributed(
    base: Config,
    make_flow: Callable[[], Any],
    runs: int,
    steps_per_run: int,
    engines: int = 1,
    workers: int = 1,
) -> dict[str, Any]:
    """`batch` on a cluster of its own, started and cleaned up around it."""
    cfg = fresh(base)
    cluster = Cluster(cfg, engines, workers)
    cli = client(cfg)
    try:
        return batch(cluster, cli, make_flow().compile(), runs, steps_per_run, lambda i: {"v0": i})
    finally:
        cli.close()
        cluster.close()
        cleanup(cfg)


def local_mode(runs: int) -> float:
    """Runs submitted at once in one process (`ackflow run`'s embedded mode), with the same
    worker concurrency (8) as the distributed chains: steps/s."""
    from runner.local import LocalRuntime

    spec = chain(10).compile()
    with LocalRuntime(concurrency=8) as rt:
        start = time.perf_counter()
        ids = [rt.client.submit(spec, {"v0": i}) for i in range(runs)]
        for rid in ids:
            rt.client.wait(rid, 600)
        return runs * 10 / (time.perf_counter() - start)


def local_serial(runs: int, steps: int = 10) -> dict[str, Any]:
    """``runs`` chains of ``steps``, one at a time, in one process (local mode), as TaskFlow's
    serial engine runs them: steps/s and this process's CPU per 1,000 steps."""
    from runner.local import LocalRuntime

    spec = chain(steps).compile()
    with LocalRuntime(concurrency=8) as rt:
        rt.client.wait(rt.client.submit(spec, {"v0": 0}), 60)
        meter = Meter({}, own="in-process", services=False)
        meter.start()
        start = time.perf_counter()
        for i in range(runs):
            info = rt.client.wait(rt.client.submit(spec, {"v0": i}), 60)
            assert info.status == "SUCCESS", info
        elapsed = time.perf_counter() - start
        return {"steps_per_s": runs * steps / elapsed, "cpu_per_1000": meter.per_1000(runs * steps)}


def idle_latency(cluster: Cluster, cli: Client, runs: int) -> dict[str, float]:
    """One 10-step chain at a time on an otherwise idle cluster: submit to result, ms."""
    spec = chain(10).compile()
    cli.wait(cli.submit(spec, {"v0": 0}), 120)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        info = cli.wait(cli.submit(spec, {"v0": i}), 60)
        times.append(1000 * (time.perf_counter() - t0))
        assert info.status == "SUCCESS", info
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": percentile(times, 0.99),
        "runs": float(runs),
    }
