"""The Celery app of the bench's peer comparison, configured as Celery's users configure it
for reliability: late acks, a task whose worker died is requeued, one message prefetched per
process, msgpack, RabbitMQ as the broker and Redis as the result backend. Its queue, exchange
and result keys carry the bench's prefix, so parallel runs share neither.

The worker process (``celery -A runner.ops.bench.celery_app worker``) reads its broker,
backend and prefix from ``ACKFLOW_BENCH_CELERY_*``; the bench builds its own with `make_app`.
Importing this module needs Celery (the ``bench`` extra)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery


def noop(x: int = 0) -> int:
    return x


def join(values: list[Any]) -> int:
    return len(values)


def make_app(broker_url: str, backend_url: str, prefix: str) -> Any:
    app = Celery("ackflow_bench", broker=broker_url, backend=backend_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
        task_default_queue=prefix,
        task_default_exchange=prefix,
        task_default_routing_key=prefix,
        result_backend_transport_options={"global_keyprefix": f"{prefix}:"},
        result_expires=3600,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name="bench.noop")(noop)
    app.task(name="bench.join")(join)
    return app


app = make_app(
    os.environ.get("ACKFLOW_BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("ACKFLOW_BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/0"),
    os.environ.get("ACKFLOW_BENCH_CELERY_PREFIX", "ackflow-bench-celery"),
)
