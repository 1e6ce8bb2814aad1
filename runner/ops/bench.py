"""``ackflow bench``: how fast ackflow runs next to the physical limit, measured side by side.

Every case runs ``repeat`` times, one after another, against the configured RabbitMQ and
Redis; the table shows the median with min-max, and ``bench-report.json`` keeps everything.
Cases: raw kombu messages/s (R) between a producer and a consumer process, with and without
publisher confirms; raw Redis Lua compare-and-set round trips/s; 200 ten-step chains
(steps/s, run latency from submit to the engine applying the last result, fraction of R —
both confirm-each R and confirms-per-100 R, since engines and workers confirm per batch) with
1 engine + 1 worker and with 2 + 2; fan-out/fan-in at W = 10, 100, 1000; idle latency of one
chain; local mode steps/s; failover after ``kill -9`` of an engine and of a worker (once,
after the repeated cases: per kill whose victim held work, the time from the kill to the
next transition of that work; p50 and max, with n, per role); footprint (Redis bytes per
task state, process memory growth over 10,000 runs).
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
from runner.client import Client, HistoryEntry
from runner.config import Config
from runner.connect import open_broker, open_store
from runner.errors import BrokerUnavailable


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
        if not ready.wait(60):
            raise BrokerUnavailable("the benchmark's consumer process did not start consuming within 60 s")
        start = time.time()
        batch = {"none": 100, "each": 1, "batch": 100}[confirms]
        for i in range(0, n, batch):
            msgs = [Outgoing("task.raw", f"m{i + j}", body) for j in range(min(batch, n - i))]
            if confirms == "none":
                prod.publish_unconfirmed(msgs)
            else:
                prod.publish(msgs)
        end = out.get(timeout=300)  # raises queue.Empty if the consumer never finished
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
    """Submit ``runs`` at once, wait for all: steps/s, and run latency percentiles from the
    submit's return to the engine applying the run's last result (history ``t``; the run's
    ``finished_ms`` is when the worker made that result, before its wait in the queue)."""
    cfg = _cfg(base)
    cluster = Cluster(cfg, engines, workers)
    client = _client(cfg)
    try:
        flow = make_flow().compile()
        warm = client.submit(flow, {"v0": 0})
        client.wait(warm, 120)
        start = time.perf_counter()
        submitted = {client.submit(flow, {"v0": i}): time.time() for i in range(runs)}
        for rid in submitted:
            info = client.wait(rid, 600)
            assert info.status == "SUCCESS", info
        elapsed = time.perf_counter() - start
        latencies = [finished_at(client.history(rid)) / 1000 - at for rid, at in submitted.items()]
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


def finished_at(history: list[HistoryEntry]) -> float:
    """When the engine applied the run's final transition (ms)."""
    done = [h for h in history if h.scope == "run" and h.new == "SUCCESS" and h.old != h.new]
    if not done or "t" not in done[-1].extra:
        raise AssertionError(f"no applied final transition in the history: {history[-3:]}")
    return float(done[-1].extra["t"])


def held_work_delay(role: str, pid: int, t0: float, histories: dict[str, list[HistoryEntry]]) -> float | None:
    """Ms from a kill at ``t0`` to the next transition of the work the victim held, the
    slowest of it counting; None if it held nothing (the kill measured nothing). Only one
    process is killed at a time, so whatever is redelivered after the kill was the victim's:

    - an engine held the events created before the kill and applied after it as redeliveries;
    - a worker held the tasks whose last transition before the kill was RUNNING on it, and
      the requests redelivered after it (their "started" event, sent at once on a
      redelivery, has the delivery count in its id; a quick task is otherwise never RUNNING
      in the history)."""
    delays = []
    for rid, history in histories.items():
        applied = [h for h in history if "t" in h.extra]
        if role == "engine":
            delays += [
                h.extra["t"] - t0
                for h in applied
                if h.extra.get("redelivered") and h.at_ms < t0 < h.extra["t"]
            ]
            continue
        by_task: dict[str, list[HistoryEntry]] = {}
        for h in applied:
            if h.scope == "run":
                continue
            by_task.setdefault(h.scope, []).append(h)
            if h.extra["t"] > t0 and h.event.startswith(protocol.started_id(rid, h.scope, h.attempt) + ":"):
                delays.append(h.extra["t"] - t0)
        for entries in by_task.values():
            before = [h for h in entries if h.extra["t"] <= t0]
            after = [h for h in entries if h.extra["t"] > t0]
            if (
                before
                and after
                and before[-1].new == "RUNNING"
                and str(before[-1].extra.get("worker", "")).endswith(f":{pid}")
            ):
                delays.append(after[0].extra["t"] - t0)
    return float(max(delays)) if delays else None


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
    engine (then one worker) and measure, per kill whose victim held work, the time from the
    kill to the next transition of that work (`held_work_delay`). A kill that held nothing
    is not counted (an engine holds an event for a few ms at a time): ``kills`` is tried,
    n = len(values) is measured. No replacement is needed for the survivors to take over
    (one is started after each measurement, to keep two of each)."""
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
                delay = held_work_delay(role, victim.pid, t0, {rid: client.history(rid) for rid in ids})
                if delay is not None:
                    out[role].append(delay)
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
    tried = 5 if quick else 20
    fo = failover(base, tried)
    for role, values in fo.items():
        values.sort()
        # p50 and max only: with n of 20 or fewer, a "p99" is the max under another name
        add(f"failover after kill -9 {role}: n (of {tried} kills, the victim held work)", len(values))
        if values:
            add(f"failover after kill -9 {role}: p50 ms", values[len(values) // 2])
            add(f"failover after kill -9 {role}: max ms", values[-1])
    fp = footprint(base, 2000 if quick else 10_000)
    for k, v in fp.items():
        add(f"footprint: {k}", v)
    med = {k: statistics.median(v) for k, v in cases.items()}
    report: dict[str, Any] = {k: {**_summary(v), "runs": v} for k, v in cases.items()}
    report["ratios"] = {
        "chain steps/s / R(confirm each)": med["chains: steps/s"] / med["raw kombu msgs/s, confirm each (R)"],
        # engines and workers confirm per batch: this R is the fairer baseline
        "chain steps/s / R(confirms per 100)": med["chains: steps/s"]
        / med["raw kombu msgs/s, confirms per 100"],
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
