"""What the Redis Cluster store adds to the store contract (which it passes too, in
test_store_contract.py): the step after each commit that keeps the global indexes and the
timer buckets, its repair when an event comes again, replicas holding a commit before it
counts, and commits going on while a run's slot moves to another master."""

from __future__ import annotations

import logging
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runner.config import Config
from runner.errors import StoreUnavailable
from runner.store import Commit, CommitResult, keys
from runner.store.redis_cluster import RedisClusterStore
from tests.chaos.services import OwnRedisCluster


@pytest.fixture
def cluster(redis_cluster: OwnRedisCluster) -> OwnRedisCluster:
    return redis_cluster


@pytest.fixture
def store(config: Config, cluster: OwnRedisCluster) -> Iterator[RedisClusterStore]:
    s = RedisClusterStore(config.with_(redis_url=cluster.url))
    yield s
    s.delete_prefix()
    s.close()


def rid() -> str:
    return uuid.uuid4().hex


def created(r: str, status: str = "RUNNING", **kw: Any) -> Commit:
    return Commit(
        r,
        "create",
        writes={keys.META: {"status": status.encode(), "flow": b"f", "created_ms": b"7"}},
        status_change=("", status),
        created_ms=7,
        flow="f",
        **kw,
    )


def test_a_commit_whose_second_step_failed_is_repaired_when_its_event_comes_again(
    store: RedisClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine died (or the cluster failed) between the run's commit and the index and
    timer writes after it: the event was not acknowledged, so it comes again, and its
    repeat puts the run in the indexes and its timer in a bucket."""
    r = rid()
    c = created(r, timers={"t1": (1_000, b"fire")})

    def outage(*_: Any) -> None:
        raise StoreUnavailable("the cluster failed over")

    with monkeypatch.context() as m:
        m.setattr(store, "_index_run", outage)
        with pytest.raises(StoreUnavailable):
            store.commit(c)
    assert r not in store.list_runs(None, 100)  # the commit holds, the indexes lag
    assert store.claim_timers(5_000, 10, 1_000) == ([], None)

    again = store.commit(c)
    assert again.outcome == "duplicate"
    assert r in store.list_runs("RUNNING", 100) and r in store.list_runs(None, 100)
    assert [c for _, c in store.page_runs("RUNNING", "f")[0]] == [7]
    due, _ = store.claim_timers(5_000, 10, 1_000)
    assert [(t.run_id, t.timer_id, t.event) for t in due] == [(r, "t1", b"fire")]
    assert store.history(r) == []  # nothing applied twice (the commit had no history)


def test_an_older_status_never_replaces_a_newer_one_in_the_indexes(store: RedisClusterStore) -> None:
    """Two engines write a run's indexes after their commits; the slower one, carrying the
    older status, must not win (the run would be listed under a status it left)."""
    r = rid()
    assert store.commit(created(r)).applied
    failed = Commit(
        r,
        "fail",
        writes={keys.META: {"status": b"FAILED"}},
        status_change=("RUNNING", "FAILED"),
        created_ms=7,
    )
    assert store.commit(failed).applied
    store._index_run(r, 1, "RUNNING", 7, "f")  # the late write of the first change
    assert r in store.list_runs("FAILED", 100)
    assert r not in store.client.zrange(keys.status_index(store._ix_root, "RUNNING"), 0, -1)
    assert [c for _, c in store.page_runs("FAILED", "f")[0]] == [7]
    assert store.page_runs("RUNNING", "f")[0] == []


def test_a_commit_waits_for_the_replica_of_its_master(
    store: RedisClusterStore, cluster: OwnRedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With the master's replica stopped, a commit cannot be on two nodes: the store waits
    for it (up to the timeout), then says so; with the replica back, commits are quiet."""
    r = rid()
    master = cluster.master_of(keys.run_key(store._prefix, r, keys.META))
    master_id = cluster.node_id(master)
    replica = next(int(n["port"]) for n in cluster.nodes() if n["master"] == master_id)
    quick = RedisClusterStore(store._config.with_(redis_wait_timeout_ms=300))
    cluster.procs[replica].send_signal(signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="ackflow.store"):
            assert quick.commit(created(r)).applied
    finally:
        cluster.procs[replica].send_signal(signal.SIGCONT)
    assert "reached 0 of 1 replicas" in caplog.text
    caplog.clear()
    cluster.wait_replicas()
    with caplog.at_level(logging.WARNING, logger="ackflow.store"):
        assert quick.commit(Commit(r, "next", history=[b"h"])).applied
    assert "replicas" not in caplog.text
    quick.close()


def _commit_through(store: RedisClusterStore, c: Commit) -> tuple[CommitResult, int]:
    """Commit as the engine does: an outage is waited out and the commit tried again."""
    for outages in range(10):
        try:
            return store.commit(c), outages
        except StoreUnavailable:
            continue
    raise AssertionError("the store stayed unavailable")


def test_commits_go_on_while_a_runs_slot_moves_to_another_master(
    store: RedisClusterStore, cluster: OwnRedisCluster
) -> None:
    r = rid()
    assert store.commit(created(r, history=[b"h0"])).applied
    meta = keys.run_key(store._prefix, r, keys.META)
    slot = cluster.slot_of(meta)
    src = cluster.master_of(meta)
    dst = next(int(n["port"]) for n in cluster.nodes() if n["role"] == "master" and int(n["port"]) != src)

    # Half way: some of the run's keys moved, others not. A commit touching both cannot run
    # now (TRYAGAIN or ASK): an outage, never an error that would dead-letter the event.
    cluster.begin_migration(slot, dst, keys=1)
    step = Commit(r, "step", writes={keys.DATA: {"x": b"1"}}, history=[b"h1"])
    with pytest.raises(StoreUnavailable):
        store.commit(step)
    cluster.finish_migration(slot, src, dst)

    result, _ = _commit_through(store, step)
    assert result.applied
    result, _ = _commit_through(
        store,
        Commit(
            r,
            "end",
            writes={keys.META: {"status": b"SUCCESS"}},
            status_change=("RUNNING", "SUCCESS"),
            history=[b"h2"],
        ),
    )
    assert result.applied
    assert cluster.master_of(meta) == dst
    assert store.history(r) == [b"h0", b"h1", b"h2"]  # each applied once
    assert store.read(r, {keys.DATA: ["x"]}) == {keys.DATA: [b"1"]}
    assert r in store.list_runs("SUCCESS", 100)


def test_a_cluster_no_seed_node_answers_is_unavailable_not_an_error() -> None:
    """redis-py's cluster client raises its own exception (not a RedisError) when no seed
    node answers: an outage the engine waits out, like a single Redis that is down."""
    from runner.connect import open_store
    from tests.helpers.net import free_port

    store = open_store(Config(redis_url=f"redis+cluster://127.0.0.1:{free_port()}", connect_timeout_s=0.5))
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.commit(Commit("r", "e"))


def test_a_watch_finds_the_replica_that_took_over_from_a_killed_master(
    store: RedisClusterStore, cluster: OwnRedisCluster
) -> None:
    """`Client.wait` opens its watch before any other command: after the run's master is
    killed, opening watches alone must learn the new master (found by make cluster: every
    client waiting on a run of that slot got "connection refused" until the old master came
    back, although the engines had long finished the runs)."""
    r = rid()
    assert store.commit(created(r, status="SUCCESS")).applied
    waiter = RedisClusterStore(store._config)  # opened before the kill: its slot map is old
    waiter.read(r, {keys.META: ["status"]})
    port = cluster.master_of(keys.run_key(store._prefix, r, keys.META))
    cluster.kill(port)
    try:
        cluster.wait_ok()  # the replica has taken over
        for _ in range(20):
            try:
                watch = waiter.watch(r)
                break
            except StoreUnavailable:
                continue
        else:
            raise AssertionError("20 watches in a row failed after the failover")
        _commit_through(store, Commit(r, "later", history=[b"h"]))
        assert watch.wait(30.0)  # the new master's publication reaches it
        watch.close()
    finally:
        waiter.close()
        cluster.restart(port)  # back, as the replica of the master that took over
        cluster.wait_ok()
        cluster.wait_replicas()
