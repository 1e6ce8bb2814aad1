"""The physical limit next to which ackflow's figures are read: raw kombu messages/s between
a producer and a consumer process (with and without publisher confirms) and raw Redis Lua
compare-and-set round trips/s, on the same RabbitMQ and Redis."""

from __future__ import annotations

import time
from typing import Any

from runner import protocol
from runner.broker import Outgoing
from runner.config import Config
from runner.connect import open_broker, open_store
from runner.errors import BrokerUnavailable
from runner.ops.bench.procs import fresh


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

    cfg = fresh(base)
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
    store = open_store(fresh(base))
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
