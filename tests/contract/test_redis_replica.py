"""One Redis server with a replica (no cluster): a commit counts once the replica holds it,
so a failover to the replica loses no acknowledged transition."""

from __future__ import annotations

import logging
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runner.config import Config
from runner.store import Commit, keys
from runner.store.redis import RedisStore
from tests.chaos.services import OwnRedis, _wait


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[OwnRedis, OwnRedis]]:
    master = OwnRedis(tmp_path)
    replica = OwnRedis(tmp_path, replica_of=master)
    try:
        master.start()
        replica.start()
        r = redis.Redis(port=replica.port)
        _wait(
            lambda: None if r.info("replication").get("master_link_status") == "up" else "syncing",
            30,
            "replica",
        )
        r.close()
        yield master, replica
    finally:
        replica.stop()
        master.stop()


def test_a_commit_is_on_the_replica_before_it_counts(
    pair: tuple[OwnRedis, OwnRedis], caplog: pytest.LogCaptureFixture
) -> None:
    master, replica = pair
    store = RedisStore(Config(redis_url=master.url, prefix="rep", redis_wait_timeout_ms=300))
    r = uuid.uuid4().hex
    assert store.commit(Commit(r, "e1", writes={keys.META: {"status": b"RUNNING"}})).applied
    on_replica = redis.Redis(port=replica.port)
    assert on_replica.hget(keys.run_key("rep", r, keys.META), "status") == b"RUNNING"

    assert replica.proc is not None
    replica.proc.send_signal(signal.SIGSTOP)  # it cannot acknowledge now
    try:
        with caplog.at_level(logging.WARNING, logger="ackflow.store"):
            assert store.commit(Commit(r, "e2", history=[b"h"])).applied
    finally:
        replica.proc.send_signal(signal.SIGCONT)
    assert "reached 0 of 1 replicas" in caplog.text  # the loss window, said out loud
    on_replica.close()
    store.close()
