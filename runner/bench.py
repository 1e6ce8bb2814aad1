"""``ackflow bench``: how fast ackflow runs next to the physical limit, measured side by side.

Every case runs ``repeat`` times, one after another, against the configured RabbitMQ and
Redis; the table shows the median with min-max, and ``bench-report.json`` keeps everything.
Cases: raw kombu messages/s (R) with and without publisher confirms; raw Redis Lua
compare-and-set round trips/s; 200 ten-step chains (steps/s, run latency, fraction of R);
fan-out/fan-in at W = 10, 100, 1000; idle latency of one chain; local mode steps/s.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from runner import protocol
from runner.broker import Outgoing
from runner.client import Client
from runner.config import Config
from runner.kombu_broker import KombuBroker
from runner.redis_store import RedisStore


def _cfg(base: Config) -> Config:
    return base.with_(prefix=f"bench-{uuid.uuid4().hex[:8]}")


def raw_kombu(base: Config, n: int, confirms: str) -> float:
    """Messages/s through one durable queue: a producer thread and a consumer thread, each
    with its own connection (in this process; the consumer acks each message)."""
    cfg = _cfg(base)
    prod, cons = KombuBroker(cfg), KombuBroker(cfg)
    body = protocol.pack({"payload": "x" * 180})
    try:
        prod.declare(["task.raw"])
        cons.consume(["task.raw"], 64)
        done = threading.Event()
        got = 0

        def consume() -> None:
            nonlocal got
            while got < n:
                for d in cons.poll(1.0):
                    cons.ack(d)
                    got += 1
            done.set()

        start = time.perf_counter()
        t = threading.Thread(target=consume)
        t.start()
        batch = {"none": 100, "each": 1, "batch": 100}[confirms]
        for i in range(0, n, batch):
            msgs = [Outgoing("task.raw", f"m{i + j}", body) for j in range(min(batch, n - i))]
            if confirms == "none":
                prod.publish_unconfirmed(msgs)
            else:
                prod.publish(msgs)
        done.wait(120)
        t.join()
        return n / (time.perf_counter() - start)
    finally:
        prod.delete_queues()
        prod.close()
        cons.close()


def raw_redis(base: Config, n: int) -> float:
    """Round trips/s of one atomic Lua compare-and-set."""
    store = RedisStore(_cfg(base))
    script = store.client.register_script(
        "local v = redis.call('GET', KEYS[1]) if v == ARGV[1] or (not v and ARGV[1] == '') then "
        "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0"
    )
    key = f"{store._prefix}:cas"
    cur = ""
    start = time.perf_counter()
    for i in range(n):
        script(keys=[key], args=[cur, str(i)])
        cur = str(i)
    rate = n / (time.perf_counter() - start)
    store.client.delete(key)
    store.close()
    return rate


class Cluster:
    """Engines and workers as separate processes, as in production."""

    def __init__(self, cfg: Config, engines: int = 1, workers: int = 1) -> None:
        env = dict(
            os.environ,
            ACKFLOW_BROKER_URL=cfg.broker_url,
            ACKFLOW_REDIS_URL=cfg.redis_url,
            ACKFLOW_PREFIX=cfg.prefix,
            ACKFLOW_LOG_LEVEL="warning",
        )
        cmd = [sys.executable, "-m", "runner.cli"]
        self.procs = [subprocess.Popen([*cmd, "engine"], env=env) for _ in range(engines)]
        self.procs += [
            subprocess.Popen([*cmd, "worker", "runner.examples.noop", "-c", "8"], env=env)
            for _ in range(workers)
        ]

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(30)


def _client(cfg: Config) -> Client:
    return Client(cfg, RedisStore(cfg), lambda: KombuBroker(cfg))


def _cleanup(cfg: Config) -> None:
    b = KombuBroker(cfg)
    b.connect()
    b._declared |= {"task.default"}
    b.delete_queues()
    b.close()
    s = RedisStore(cfg)
    s.delete_prefix()
    s.close()


def distributed(
    base: Config,
    make_flow: Callable[[], Any],
    runs: int,
    steps_per_run: int,
    engines: int = 1,
    workers: int = 1,
) -> dict[str, float]:
    """Submit ``runs`` at once, wait for all: steps/s and run latency percentiles."""
    cfg = _cfg(base)
    cluster = Cluster(cfg, engines, workers)
    client = _client(cfg)
    try:
        flow = make_flow().compile()
        warm = client.submit(flow, {"v0": 0})
        client.wait(warm, 120)
        start = time.perf_counter()
        submitted = {client.submit(flow, {"v0": i}): time.time() for i in range(runs)}
        latencies = []
        for rid in submitted:
            info = client.wait(rid, 600)
            assert info.status == "SUCCESS", info
            latencies.append((info.finished_ms or 0) / 1000 - submitted[rid])
        elapsed = time.perf_counter() - start
        latencies.sort()
        return {
            "steps_per_s": runs * steps_per_run / elapsed,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        }
    finally:
        client.close()
        cluster.close()
        _cleanup(cfg)


def idle_latency(base: Config, runs: int) -> dict[str, float]:
    """One 10-step chain at a time on an idle system: end-to-end ms."""
    from runner.examples.noop import chain

    cfg = _cfg(base)
    cluster = Cluster(cfg)
    client = _client(cfg)
    try:
        flow = chain(10).compile()
        client.wait(client.submit(flow, {"v0": 0}), 120)
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            client.wait(client.submit(flow, {"v0": i}), 60)
            times.append(1000 * (time.perf_counter() - t0))
        times.sort()
        return {
            "p50_ms": times[len(times) // 2],
            "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))],
        }
    finally:
        client.close()
        cluster.close()
        _cleanup(cfg)


def local_mode(runs: int) -> float:
    from runner.examples.noop import chain
    from runner.local import LocalRuntime

    flow = chain(10).compile()
    with LocalRuntime(concurrency=4) as rt:
        start = time.perf_counter()
        ids = [rt.client.submit(flow, {"v0": i}) for i in range(runs)]
        for rid in ids:
            rt.client.wait(rid, 600)
        return runs * 10 / (time.perf_counter() - start)


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_all(base: Config, repeat: int = 3, quick: bool = False) -> dict[str, Any]:
    from runner.examples.noop import chain, fanout

    n_msgs, n_runs = (2000, 40) if quick else (10000, 200)
    cases: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        cases.setdefault(name, []).append(value)
        print(f"  {name}: {value:,.1f}", file=sys.stderr, flush=True)

    for r in range(repeat):
        print(f"round {r + 1}/{repeat}", file=sys.stderr, flush=True)
        add("raw kombu msgs/s, no confirms", raw_kombu(base, n_msgs, "none"))
        add("raw kombu msgs/s, confirm each (R)", raw_kombu(base, n_msgs // 5, "each"))
        add("raw kombu msgs/s, confirms per 100", raw_kombu(base, n_msgs, "batch"))
        add("raw redis Lua CAS round trips/s", raw_redis(base, n_msgs))
        c = distributed(base, lambda: chain(10), n_runs, 10)
        add("chains: steps/s", c["steps_per_s"])
        add("chains: run latency p50 ms", c["p50_ms"])
        add("chains: run latency p99 ms", c["p99_ms"])
        for w in (10, 100, 1000):
            f = distributed(base, functools.partial(fanout, w), max(1, 2000 // (w + 2)), w + 2)
            add(f"fan-out W={w}: steps/s", f["steps_per_s"])
        i = idle_latency(base, 20 if quick else 50)
        add("idle 10-step chain p50 ms", i["p50_ms"])
        add("idle 10-step chain p99 ms", i["p99_ms"])
        add("local mode steps/s", local_mode(n_runs))
    med = {k: statistics.median(v) for k, v in cases.items()}
    report: dict[str, Any] = {k: {**_summary(v), "runs": v} for k, v in cases.items()}
    report["ratios"] = {
        "chain steps/s / R(confirm each)": med["chains: steps/s"] / med["raw kombu msgs/s, confirm each (R)"],
        "fan-out W=1000 / W=10": med["fan-out W=1000: steps/s"] / med["fan-out W=10: steps/s"],
    }
    return report


def print_table(report: dict[str, Any]) -> None:
    width = max(len(k) for k in report)
    for k, v in report.items():
        if k == "ratios":
            continue
        print(f"{k:<{width}}  {v['median']:>12,.1f}   ({v['min']:,.1f} - {v['max']:,.1f})")
    for k, v in report["ratios"].items():
        print(f"{k:<{width}}  {v:>12.3f}")


def main(base: Config, repeat: int, quick: bool, out: str) -> None:
    report = run_all(base, repeat, quick)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print_table(report)
