"""The one place that builds a store, a broker or a client from a `Config`.

Distributed mode (`open_store`, `open_broker`; `Client.from_config` uses both): Redis at ``redis_url`` and
RabbitMQ at ``broker_url``. Local mode (`open_local`): the in-memory store and an in-process
broker hub, nothing survives the process. Callers choose the mode by which function they call,
as they chose the classes before; everything else (engine, workers, client, operator
surfaces) receives what these return and sees only the `Store` / `Broker` contracts.

The adapters are imported inside the functions on purpose: ``import runner`` and local mode
must not load kombu or redis-py (the only modules that import them are
`runner.broker.kombu` and `runner.store.redis`).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from runner.config import Config, is_cluster_url
from runner.errors import StoreUnavailable

log = logging.getLogger("ackflow.connect")

if TYPE_CHECKING:
    from runner.broker.kombu import KombuBroker
    from runner.broker.local import LocalHub
    from runner.store.memory import MemoryStore
    from runner.store.redis import RedisStore


def open_store(config: Config) -> RedisStore:
    """The Redis store at ``config.redis_url``, under ``config.prefix`` (connects lazily): on a
    Redis Cluster for a ``redis+cluster://`` or ``rediss+cluster://`` URL, else on one server."""
    if is_cluster_url(config.redis_url):
        from runner.store.redis_cluster import RedisClusterStore

        return RedisClusterStore(config)
    from runner.store.redis import RedisStore

    return RedisStore(config)


def open_broker(
    config: Config, role: str = "client", *, attempts: int = 0, wait_s: float = 0.0
) -> KombuBroker:
    """The RabbitMQ broker at ``config.broker_url``; ``role`` names the connection in
    RabbitMQ's management UI. With ``attempts`` > 0 or ``wait_s`` > 0, connect (and declare
    the topology) now, trying that many rounds over its hosts and for that long, with backoff;
    otherwise on first use."""
    from runner.broker.kombu import KombuBroker

    broker = KombuBroker(config, role=role)
    if attempts > 0 or wait_s > 0:
        try:
            broker.connect(attempts=max(attempts, 1), wait_s=wait_s)
        except BaseException:
            broker.close()  # its wake pipe: a failed open leaks no descriptors
            raise
    return broker


def wait_for_store(store: RedisStore, wait_s: float) -> None:
    """Ping ``store`` until it answers, for up to ``wait_s`` seconds (jittered, logged
    retries); then raise its `StoreUnavailable`."""
    deadline = time.monotonic() + wait_s
    delay = 0.1
    while True:
        try:
            store.ping()
            return
        except StoreUnavailable as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("%s; retrying (for up to %.0f s more)", e, left)
            time.sleep(min(delay * random.uniform(0.5, 1.0), left))
            delay = min(delay * 2, 5.0)


def probe_config(config: Config) -> Config:
    """``config`` for the side connections of scrapes and health probes: short timeouts, so a
    probe of a Redis that does not answer says so before the prober gives up."""
    return replace(config, connect_timeout_s=min(config.connect_timeout_s, 1.0))


def open_local() -> tuple[MemoryStore, LocalHub]:
    """Local mode's store and broker hub (``hub.connect()`` gives each user its own broker)."""
    from runner.broker.local import LocalHub
    from runner.store.memory import MemoryStore

    return MemoryStore(), LocalHub()
