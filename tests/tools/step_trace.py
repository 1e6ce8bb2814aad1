"""Where one idle step's latency goes: ``python -m tests.tools.step_trace [RUNS]``.

Runs an engine and a worker as threads of this process, against the configured RabbitMQ and
Redis, times their stages with wrappers, and runs RUNS (default 30) ten-step chains one at a
time. Prints the median of each stage of a step and of a whole chain (submit to result):
the engine's decision (its Redis read, the decision, its commit, the send), the two broker
hops, and the worker's share (taking the request, its skip check, the task, the hand-off back
to the worker's loop, the send). A hop is a send's end to the next stage's start on the other
side, so it is the broker's share (compare `tests.tools.queue_latency`). Figures, not tests;
threads of one process share the GIL, so stages read a little slower than in processes.
"""

from __future__ import annotations

import functools
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

Span = tuple[str, float, float]  # stage, start, end (perf_counter seconds)


def _wrap(spans: list[Span], owner: Any, attr: str, stage: str) -> None:
    inner = getattr(owner, attr)

    @functools.wraps(inner)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spans.append((stage, start, time.perf_counter()))

    setattr(owner, attr, timed)


def _instrument(spans: list[Span]) -> None:
    import workers.loop as worker_loop
    from runner.broker.kombu import KombuBroker
    from runner.engine import Engine
    from runner.engine.reader import RunReader
    from runner.store.redis import RedisStore

    _wrap(spans, Engine, "_handle_events", "engine batch")
    _wrap(spans, Engine, "_apply_one", "engine decision")
    _wrap(spans, RunReader, "decide", "engine read + decide")
    _wrap(spans, RedisStore, "commit", "redis commit")
    _wrap(spans, RedisStore, "read", "redis read")
    _wrap(spans, worker_loop.Worker, "_accept", "worker take")
    _wrap(spans, worker_loop, "superseded", "worker skip check")
    _wrap(spans, worker_loop, "execute", "worker task")
    _wrap(spans, worker_loop.Worker, "_finish", "worker finish")
    _wrap(spans, KombuBroker, "send", "send")


def _after(spans: list[Span], stage: str, t: float) -> Span | None:
    return next((s for s in spans if s[0] == stage and s[1] >= t), None)


def _steps(spans: list[Span]) -> dict[str, list[float]]:
    """Per-step stage durations (ms) of one chain's spans, in time order."""
    out: dict[str, list[float]] = {}

    def add(name: str, ms: float) -> None:
        out.setdefault(name, []).append(ms)

    for stage, start, end in spans:
        add(stage, 1000 * (end - start))
    for decision in (s for s in spans if s[0] == "engine decision"):
        take = _after(spans, "worker take", decision[2])
        if take is None:
            continue  # the last result: no request follows
        add("hop engine -> worker", 1000 * (take[1] - decision[2]))
        task = _after(spans, "worker task", take[1])
        finish = _after(spans, "worker finish", task[2]) if task else None
        if task is None or finish is None:
            continue
        add("task end -> worker loop", 1000 * (finish[1] - task[2]))
        send = _after(spans, "send", finish[1])
        batch = _after(spans, "engine batch", send[2]) if send else None
        if send is not None and batch is not None:
            add("hop worker -> engine", 1000 * (batch[1] - send[2]))
            add("step (decision start to next)", 1000 * (batch[1] - decision[1]))
    return out


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    spans: list[Span] = []
    _instrument(spans)
    import runner.examples.noop as noop
    from runner.client import Client
    from runner.config import Config
    from runner.connect import open_broker, open_store
    from runner.define.tasks import REGISTRY
    from runner.engine import Engine
    from runner.ops.bench.procs import cleanup
    from workers.loop import Worker

    cfg = Config.from_env().with_(prefix=f"trace-{uuid.uuid4().hex[:6]}")
    engine = Engine(cfg, open_store(cfg), open_broker(cfg))
    worker = Worker(cfg, open_broker(cfg), REGISTRY, concurrency=8, name="trace", store=open_store(cfg))
    stops: list[Callable[[], None]] = [engine.stop, worker.stop]
    threads = [threading.Thread(target=x.run, daemon=True) for x in (engine, worker)]
    for t in threads:
        t.start()
    client = Client.from_config(cfg)
    spec = noop.chain(10).compile()
    stages: dict[str, list[float]] = {}
    chains: list[float] = []
    try:
        for i in range(runs + 3):  # three to warm up
            spans.clear()
            start = time.perf_counter()
            assert client.wait(client.submit(spec, {"v0": i}), 60).status == "SUCCESS"
            if i >= 3:
                chains.append(1000 * (time.perf_counter() - start))
                for name, ms in _steps(sorted(spans, key=lambda s: s[1])).items():
                    stages.setdefault(name, []).extend(ms)
    finally:
        for stop in stops:
            stop()
        for t in threads:
            t.join(10)
        client.close()
        cleanup(cfg)
    print(f"{runs} ten-step chains, one at a time: submit to result p50 {statistics.median(chains):.1f} ms")
    print(f"{'stage (median per step)':34} {'ms':>6} {'count':>6}")
    for name, values in sorted(stages.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"{name:34} {statistics.median(values):6.2f} {len(values):6}")


if __name__ == "__main__":
    main()
