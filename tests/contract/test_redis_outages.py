"""A Redis that answers "not now" is an outage, never a bad event: an out-of-memory server
(noeviction) or a read-only replica (what a client that reached a demoted master sees) must
raise `StoreUnavailable` — the engine then leaves the event unacknowledged to come back —
and never `StoreError`, which the engine answers by dead-lettering the event.

Each test runs its own redis-server on a free port (the shared one is never touched)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runner.config import Config
from runner.connect import open_store
from runner.errors import StoreError, StoreUnavailable
from runner.store import Commit, keys
from tests.helpers.net import free_port
from tests.helpers.processes import Output

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def own_redis(*args: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    with tempfile.TemporaryDirectory() as logs:
        out = Output(proc.stdout, Path(logs) / "redis.log")
        try:
            assert out.wait_for("Ready to accept connections", 20), out.path.read_text()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()
            out.join(10)


@pytest.fixture
def full_redis() -> Iterator[str]:
    """A Redis at its memory limit with the noeviction policy: every write is refused (OOM)."""
    for url in own_redis("--maxmemory", "4mb", "--maxmemory-policy", "noeviction"):
        raw = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(100_000):
                raw.set(f"fill:{i}", b"x" * 4096)
        yield url


@pytest.fixture
def replica_redis() -> Iterator[str]:
    """A read-only replica (of a master that is not there): every write is refused (READONLY)."""
    yield from own_redis("--replicaof", "127.0.0.1", str(free_port()), "--replica-read-only", "yes")


def commit(url: str) -> None:
    store = open_store(Config(redis_url=url, prefix=f"t-{uuid.uuid4().hex[:10]}"))
    try:
        run = f"r-{uuid.uuid4().hex[:8]}"
        store.commit(Commit(run, "e1", writes={keys.META: {"status": b"RUNNING"}}, history=[b"h"]))
    finally:
        store.close()


@pytest.mark.parametrize("server", ["full_redis", "replica_redis"])
def test_a_redis_refusing_writes_for_now_is_unavailable_not_an_error(
    server: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(server)
    with pytest.raises(StoreError) as caught:
        commit(url)
    assert isinstance(caught.value, StoreUnavailable), f"{type(caught.value).__name__}: {caught.value}"


def test_a_commit_applies_once_the_server_has_room_again(full_redis: str) -> None:
    """The outage ends when memory is freed: the same commit then applies."""
    with pytest.raises(StoreUnavailable):
        commit(full_redis)
    redis.Redis.from_url(full_redis).flushall()
    commit(full_redis)


def test_an_engine_keeps_an_event_it_cannot_commit_for_now_and_applies_it_later(full_redis: str) -> None:
    """End to end through the engine: the submit that meets a full Redis is not dead-lettered;
    once there is room again, the same delivery is applied and the run starts."""
    from runner.broker.local import LocalHub
    from runner.client import Client
    from runner.engine import Engine
    from runner.examples.noop import chain

    raw = redis.Redis.from_url(full_redis)
    fill = [k for k in raw.scan_iter("fill:*", count=1000)]
    raw.delete(*fill[:200])  # room for the submit's own writes (reserve, then publish)
    cfg = Config(redis_url=full_redis, prefix=f"t-{uuid.uuid4().hex[:10]}")
    store = open_store(cfg)
    hub = LocalHub()
    client = Client(cfg, store, hub.connect)
    run_id = client.submit(chain(2), {})
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(100_000):
            raw.set(f"fill2:{i}", b"x" * 4096)
    waiting = threading.Event()

    class Outage(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "state store unavailable" in record.getMessage():
                waiting.set()

    handler = Outage()
    logging.getLogger("ackflow.engine").addHandler(handler)
    engine = Engine(cfg, store, hub.connect())
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    dead = hub.connect()
    try:
        assert waiting.wait(30), "the engine never met the outage"
        assert dead.list_dead() == [], "an outage dead-lettered the event"
        assert client.status(run_id).status == "PENDING"
        raw.delete(*raw.keys("fill*"))
        watch = store.watch(run_id)
        deadline = time.monotonic() + 30
        while client.status(run_id).status == "PENDING" and time.monotonic() < deadline:
            watch.wait(1.0)
        watch.close()
        assert client.status(run_id).status == "RUNNING"
        assert dead.list_dead() == []
    finally:
        logging.getLogger("ackflow.engine").removeHandler(handler)
        engine.stop()
        thread.join(30)
        store.close()
