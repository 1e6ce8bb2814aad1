"""``ackflow bench``: how fast ackflow runs next to the physical limit, measured side by side.

Every case runs ``repeat`` times, one after another, against the configured RabbitMQ and
Redis; the table shows the median with min-max, and ``bench-report.json`` keeps everything.
Cases: raw kombu messages/s (R) between a producer and a consumer process, with and without
publisher confirms; raw Redis Lua compare-and-set round trips/s; 200 ten-step chains
(steps/s, run latency, fraction of R) with 1 engine + 1 worker and with 2 + 2; fan-out/fan-in
at W = 10, 100, 1000; idle latency of one chain; local mode steps/s; failover after
``kill -9`` of an engine and of a worker (time to the next transition of the runs in flight;
once, after the repeated cases); footprint (Redis bytes per task state, process memory
growth over 10,000 runs).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from runner import protocol
from runner.broker import Outgoing
from runner.client import Client
from runner.config import Config
from runner.connect import open_broker, open_store


def _cfg(base: Config) -> Config:
    return base.with_(prefix=f"bench-{uuid.uuid4().hex[:8]}")


def _raw_consumer(cfg: Config, n: int, ready: Any, out: Any) -> None:
    cons = open_broker(cfg)
    try:
        cons.consume(["task.raw"], 64)
        ready.set()
        got = 0
        while got < n:
            for d in cons.poll(1.0):
                cons.ack(d)
                got += 1
        out.put(time.time())
    finally:
        cons.close()


def raw_kombu(base: Config, n: int, confirms: str) -> float:
    """Messages/s through one durable queue, persistent 200-byte msgpack messages: one
    producer process and one consumer process (manual ack of each message)."""
    import multiprocessing

    cfg = _cfg(base)
    prod = open_broker(cfg)
    body = protocol.pack({"payload": "x" * 180})
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    try:
        prod.declare(["task.raw"])
        consumer = ctx.Process(target=_raw_consumer, args=(cfg, n, ready, out))
        consumer.start()
        ready.wait(60)
        start = time.time()
        batch = {"none": 100, "each": 1, "batch": 100}[confirms]
        for i in range(0, n, batch):
            msgs = [Outgoing("task.raw", f"m{i + j}", body) for j in range(min(batch, n - i))]
            if confirms == "none":
                prod.publish_unconfirmed(msgs)
            else:
                prod.publish(msgs)
        end = out.get(timeout=300)
        consumer.join(30)
        return float(n / (end - start))
    finally:
        prod.delete_queues()
        prod.close()


def raw_redis(base: Config, n: int) -> float:
    """Round trips/s of one atomic Lua compare-and-set."""
    store = open_store(_cfg(base))
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
        self.cmd = [sys.executable, "-m", "runner.ops.cli"]
        self.env = env
        self.engines = [self.start("engine") for _ in range(engines)]
        self.workers = [self.start("worker") for _ in range(workers)]

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return self.engines + self.workers

    def start(self, role: str) -> subprocess.Popen[bytes]:
        args = ["engine"] if role == "engine" else ["worker", "runner.examples.noop", "-c", "8"]
        return subprocess.Popen([*self.cmd, *args], env=self.env)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            p.wait(30)

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for role, procs in (("engine", self.engines), ("worker", self.workers)):
            for k, p in enumerate(procs):
                with open(f"/proc/{p.pid}/status") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                out[f"{role}{k}"] = kb / 1024
        return out


def _client(cfg: Config) -> Client:
    return Client.from_config(cfg)


def _cleanup(cfg: Config) -> None:
    b = open_broker(cfg, attempts=1)
    b._declared |= {"task.default"}
    b.delete_queues()
    b.close()
    s = open_store(cfg)
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


def failover(base: Config, kills: int) -> dict[str, list[float]]:
    """2 engines + 2 workers; while chains of 20 ms tasks are in flight, ``kill -9`` one
    engine (then one worker) and measure, for every run in flight, the time from the kill to
    its next transition; per kill, the slowest run counts. No replacement is needed for the
    survivors to take over (one is started after each measurement, to keep two of each)."""
    import signal

    from runner.examples.noop import busy_chain

    cfg = _cfg(base)
    cluster = Cluster(cfg, engines=2, workers=2)
    client = _client(cfg)
    out: dict[str, list[float]] = {"engine": [], "worker": []}
    try:
        flow = busy_chain(10).compile()
        client.wait(client.submit(flow, {"v0": 0}), 120)
        for role in ("engine", "worker"):
            for k in range(kills):
                ids = [client.submit(flow, {"v0": i}) for i in range(8)]
                first = ids[0]
                watch = client.store.watch(first)
                while len(client.history(first)) < 8:  # well under way
                    watch.wait(0.5)
                watch.close()
                group = cluster.engines if role == "engine" else cluster.workers
                victim = group[k % 2]
                victim.send_signal(signal.SIGKILL)
                t0 = time.time() * 1000
                victim.wait(30)
                for rid in ids:
                    info = client.wait(rid, 120)
                    assert info.status == "SUCCESS", info
                delays = []
                for rid in ids:
                    after = [
                        h.extra.get("t", h.at_ms)
                        for h in client.history(rid)
                        if h.extra.get("t", h.at_ms) > t0
                    ]
                    finished = client.status(rid).finished_ms or 0
                    if after and finished > t0:  # it was in flight at the kill
                        delays.append(min(after) - t0)
                out[role].append(max(delays) if delays else 0.0)
                group[k % 2] = cluster.start(role)
        return out
    finally:
        client.close()
        cluster.close()
        _cleanup(cfg)


def footprint(base: Config, runs: int) -> dict[str, float]:
    """Redis bytes per finished task state (small results), and engine/worker RSS after
    ``runs`` runs compared with after a tenth of them."""
    from runner.examples.noop import chain
    from runner.store import keys

    cfg = _cfg(base)
    cluster = Cluster(cfg)
    client = _client(cfg)
    try:
        flow = chain(1).compile()
        rss: list[dict[str, float]] = []
        ids: list[str] = []
        for part in range(2):
            n = runs // 10 if part == 0 else runs - runs // 10
            batch = [client.submit(flow, {"v0": i}) for i in range(n)]
            for rid in batch:
                client.wait(rid, 300)
            ids += batch
            rss.append(cluster.rss_mb())
        ten = [client.submit(chain(10).compile(), {"v0": i}) for i in range(20)]
        for rid in ten:
            client.wait(rid, 120)
        r = open_store(cfg).client
        total = sum(
            int(r.memory_usage(keys.run_key(cfg.prefix, rid, p)) or 0) for rid in ten for p in keys.RUN_PARTS
        )
        return {
            "redis_bytes_per_task_state": total / (len(ten) * 10),
            "engine_rss_mb": rss[1]["engine0"],
            "engine_rss_growth": rss[1]["engine0"] / rss[0]["engine0"],
            "worker_rss_mb": rss[1]["worker0"],
            "worker_rss_growth": rss[1]["worker0"] / rss[0]["worker0"],
        }
    finally:
        client.close()
        cluster.close()
        _cleanup(cfg)


def local_mode(runs: int) -> float:
    """The chain workload in one process (`ackflow run`'s embedded mode), with the same
    worker concurrency (8) as the distributed chains."""
    from runner.examples.noop import chain
    from runner.local import LocalRuntime

    flow = chain(10).compile()
    with LocalRuntime(concurrency=8) as rt:
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
        c2 = distributed(base, lambda: chain(10), n_runs, 10, engines=2, workers=2)
        add("scale-out 2+2 chains: steps/s", c2["steps_per_s"])
        i = idle_latency(base, 20 if quick else 50)
        add("idle 10-step chain p50 ms", i["p50_ms"])
        add("idle 10-step chain p99 ms", i["p99_ms"])
        add("local mode steps/s", local_mode(n_runs))
    fo = failover(base, 5 if quick else 20)
    for role, values in fo.items():
        values.sort()
        for name, v in (
            ("p50", values[len(values) // 2]),
            ("p99", values[min(len(values) - 1, int(0.99 * len(values)))]),
            ("max", values[-1]),
        ):
            add(f"failover after kill -9 {role}: {name} ms", v)
    fp = footprint(base, 2000 if quick else 10_000)
    for k, v in fp.items():
        add(f"footprint: {k}", v)
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
