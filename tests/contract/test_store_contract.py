"""One contract, two stores: the in-memory store and Redis must behave the same."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from runner.config import Config
from runner.connect import open_store
from runner.store import Commit, DueTimer, Store, keys
from runner.store.memory import MemoryStore
from runner.store.redis import RedisStore
from runner.store.redis_cluster import RedisClusterStore


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    cfg: Config = request.getfixturevalue("config")
    if request.param == "redis-cluster":
        cfg = cfg.with_(redis_url=request.getfixturevalue("redis_cluster").url)
    s = open_store(cfg)
    yield s
    if request.param == "redis-cluster":
        s.delete_prefix()
    s.close()


def rid() -> str:
    return uuid.uuid4().hex


def test_commit_applies_writes_history_and_outbox(store: Store) -> None:
    r = rid()
    c = Commit(
        r,
        "e1",
        guards=[(keys.META, "status", None)],
        writes={keys.META: {"status": b"RUNNING"}, keys.TASKS: {"t": b"\x01"}},
        history=[b"h1", b"h2"],
        outbox={"m1": b"o1"},
        status_change=("", "RUNNING"),
        created_ms=5,
    )
    assert store.commit(c).applied
    assert store.read(r, {keys.META: ["status", "nope"], keys.TASKS: ["t"]}) == {
        keys.META: [b"RUNNING", None],
        keys.TASKS: [b"\x01"],
    }
    assert store.history(r) == [b"h1", b"h2"]
    assert store.history(r, 1) == [b"h2"]
    assert store.read_all(r, keys.OUTBOX) == {"m1": b"o1"}


def test_same_event_id_never_applies_twice_and_replays_unsent_outbox(store: Store) -> None:
    r = rid()
    c = Commit(r, "e1", writes={keys.DATA: {"x": b"1"}}, history=[b"h"], outbox={"m1": b"a", "m2": b"b"})
    assert store.commit(c).applied
    dup = store.commit(Commit(r, "e1", writes={keys.DATA: {"x": b"2"}}, history=[b"other"]))
    assert dup.outcome == "duplicate"
    assert dup.unsent == {"m1": b"a", "m2": b"b"}
    assert store.read(r, {keys.DATA: ["x"]})[keys.DATA] == [b"1"]
    assert store.history(r) == [b"h"]
    store.mark_sent(r, ["m1"])
    assert store.commit(c).unsent == {"m2": b"b"}
    store.mark_sent(r, ["m2"])
    assert store.commit(c).unsent == {}
    assert store.read_all(r, keys.OUTBOX) == {}


# An event id applies once, whatever its commit holds: a commit that sends nothing (a state
# change, a timer, a history note) must still be remembered, or its redelivery is decided and
# applied again.
def test_a_commit_without_outbox_is_remembered_and_its_repeat_refused(store: Store) -> None:
    r = uuid.uuid4().hex
    first = Commit(r, "e1", writes={keys.TASKS: {"t": b"FAILED"}}, history=[b"failed"])
    assert store.commit(first).applied
    again = store.commit(Commit(r, "e1", writes={keys.TASKS: {"t": b"other"}}, history=[b"ignored"]))
    assert (again.outcome, again.unsent) == ("duplicate", {})
    assert store.read(r, {keys.TASKS: ["t"]}) == {keys.TASKS: [b"FAILED"]}
    assert store.history(r) == [b"failed"]


def test_commits_of_several_runs_together_each_apply_conflict_or_repeat_on_its_own(store: Store) -> None:
    a, b, c = rid(), rid(), rid()
    store.commit(Commit(c, "e0", writes={keys.DATA: {"x": b"0"}}, history=[b"h0"], outbox={"m0": b"o0"}))
    results = store.commit_many(
        [
            Commit(a, "e1", guards=[(keys.META, "status", None)], writes={keys.META: {"status": b"RUNNING"}},
                   history=[b"ha"], outbox={"ma": b"oa"}, status_change=("", "RUNNING"), created_ms=5),
            Commit(b, "e2", guards=[(keys.DATA, "x", b"1")], writes={keys.DATA: {"x": b"2"}}, history=[b"hb"]),
            Commit(c, "e0", writes={keys.DATA: {"x": b"9"}}, history=[b"again"]),
        ]
    )  # fmt: skip
    assert [r.outcome for r in results] == ["applied", "conflict", "duplicate"]
    assert results[2].unsent == {"m0": b"o0"}
    got = store.read_many(
        [(a, {keys.META: ["status"], keys.OUTBOX: ["ma"]}), (b, {keys.DATA: ["x"]}), (c, {})]
    )
    assert got == [{keys.META: [b"RUNNING"], keys.OUTBOX: [b"oa"]}, {keys.DATA: [None]}, {}]
    assert (store.history(a), store.history(b), store.history(c)) == ([b"ha"], [], [b"h0"])
    assert store.list_runs("RUNNING", 10) == [a]
    assert store.commit_many([]) == []


def test_guards_are_all_checked_before_any_write(store: Store) -> None:
    r = rid()
    assert store.commit(Commit(r, "e0", writes={keys.TASKS: {"a": b"1"}})).applied
    bad = Commit(
        r,
        "e1",
        guards=[(keys.TASKS, "a", b"1"), (keys.TASKS, "b", b"x")],
        writes={keys.TASKS: {"a": b"2"}},
        history=[b"h"],
        outbox={"m": b"o"},
    )
    res = store.commit(bad)
    assert res.outcome == "conflict" and res.conflict_guard == 1
    assert store.read(r, {keys.TASKS: ["a"]})[keys.TASKS] == [b"1"]
    assert store.history(r) == [] and store.read_all(r, keys.OUTBOX) == {}
    # a conflicting event is not remembered: it can be retried and apply
    ok = Commit(
        r, "e1", guards=[(keys.TASKS, "a", b"1"), (keys.TASKS, "b", None)], writes={keys.TASKS: {"a": b"2"}}
    )
    assert store.commit(ok).applied
    assert store.commit(Commit(r, "e2", guards=[(keys.TASKS, "a", None)])).outcome == "conflict"


def test_concurrent_guarded_increments_lose_nothing(store: Store) -> None:
    """Many threads doing read-guard-write on one counter: every increment lands exactly once."""
    r = rid()
    per_thread, threads = 25, 4

    def bump(tid: int) -> None:
        for i in range(per_thread):
            while True:
                cur = store.read(r, {keys.JOINS: ["n"]})[keys.JOINS][0]
                nxt = str(int(cur or 0) + 1).encode()
                res = store.commit(
                    Commit(r, f"e{tid}-{i}", guards=[(keys.JOINS, "n", cur)], writes={keys.JOINS: {"n": nxt}})
                )
                if res.outcome != "conflict":
                    break

    ts = [threading.Thread(target=bump, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert store.read(r, {keys.JOINS: ["n"]})[keys.JOINS] == [str(per_thread * threads).encode()]


def test_delivery_counts(store: Store) -> None:
    r = rid()
    assert [store.count_delivery(r, "e1") for _ in range(3)] == [1, 2, 3]
    assert store.count_delivery(r, "e2") == 1


def test_reserve_keeps_the_first_digest(store: Store) -> None:
    r = rid()
    assert store.reserve(r, b"d1") is None
    assert store.reserve(r, b"d1") == b"d1"
    assert store.reserve(r, b"d2") == b"d1"


def test_status_indexes(store: Store) -> None:
    a, b = rid(), rid()
    store.commit(
        Commit(
            a, "s", writes={keys.META: {"status": b"RUNNING"}}, status_change=("", "RUNNING"), created_ms=1
        )
    )
    store.commit(
        Commit(
            b, "s", writes={keys.META: {"status": b"RUNNING"}}, status_change=("", "RUNNING"), created_ms=2
        )
    )
    store.commit(
        Commit(
            a,
            "f",
            writes={keys.META: {"status": b"FAILED"}},
            status_change=("RUNNING", "FAILED"),
            created_ms=1,
        )
    )
    assert [x for x in store.list_runs(None, 100) if x in (a, b)] == [b, a]
    assert a in store.list_runs("FAILED", 100) and a not in store.list_runs("RUNNING", 100)
    assert b in store.list_runs("RUNNING", 100)


def test_watch_wakes_on_commit(store: Store) -> None:
    r = rid()
    w = store.watch(r)
    try:
        assert w.wait(0.05) is False
        t = threading.Thread(
            target=lambda: store.commit(Commit(r, "e", writes={keys.META: {"status": b"X"}}))
        )
        t.start()
        assert w.wait(10) is True
        t.join()
    finally:
        w.close()


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_store(request: pytest.FixtureRequest, config: Config) -> Iterator[RedisStore]:
    """One of the two Redis stores (for what only a Redis store has: TTLs, key names)."""
    if request.param == "redis-cluster":
        config = config.with_(redis_url=request.getfixturevalue("redis_cluster").url)
    s = open_store(config)
    yield s
    s.delete_prefix()
    s.close()


def test_finished_runs_expire_active_runs_do_not(config: Config, redis_store: RedisStore) -> None:
    s = redis_store
    active, done = rid(), rid()
    s.commit(Commit(active, "e", writes={keys.META: {"status": b"RUNNING"}}, history=[b"h"]))
    s.commit(
        Commit(
            done,
            "e",
            writes={keys.META: {"status": b"SUCCESS"}},
            history=[b"h"],
            outbox={"m": b"o"},
            expire_s=300,
        )
    )
    ttl = s.client.ttl
    assert ttl(keys.run_key(config.prefix, active, keys.META)) == -1
    assert ttl(keys.run_key(config.prefix, active, keys.HISTORY)) == -1
    for part in (keys.META, keys.HISTORY, keys.APPLIED, keys.OUTBOX):
        assert 0 < ttl(keys.run_key(config.prefix, done, part)) <= 300


def test_all_keys_of_a_run_share_one_hash_tag(config: Config, redis_store: RedisStore) -> None:
    s = redis_store
    r = rid()
    s.commit(
        Commit(
            r,
            "e",
            writes={p: {"f": b"v"} for p in (*keys.RUN_HASHES, keys.LEASES) if p != keys.APPLIED},
            history=[b"h"],
            timers={"t1": (10**15, b"event")},
        )
    )
    s.count_delivery(r, "e")
    found = [k.decode() for k in s.client.scan_iter(match=f"{config.prefix}:*{r}*")]
    assert len(found) == len(keys.RUN_PARTS)
    assert all(f"{{{r}}}" in k for k in found)


def test_timers_are_claimed_when_due_hidden_while_claimed_and_removed(store: Store) -> None:
    r = rid()
    store.commit(Commit(r, "e1", writes={keys.META: {"status": b"RUNNING"}}, timers={"a": (1_000, b"ev-a")}))
    store.commit(Commit(r, "e2", timers={"b": (2_000, b"ev-b"), "c": (3_000, b"ev-c")}))
    assert store.claim_timers(999, 10, 500) == ([], 1_000)
    due, nxt = store.claim_timers(2_000, 10, 5_000)
    assert sorted((t.timer_id, t.event) for t in due) == [("a", b"ev-a"), ("b", b"ev-b")]
    assert all(t.run_id == r for t in due)
    assert nxt == 3_000
    assert store.claim_timers(2_500, 10, 5_000)[0] == []  # claimed: hidden from other engines
    # Not removed within the hold (the claimer died): they come back.
    again, _ = store.claim_timers(7_001, 10, 5_000)
    assert sorted(t.timer_id for t in again) == ["a", "b", "c"]
    store.remove_timers([DueTimer(r, "a", b""), DueTimer(r, "b", b"")])
    store.commit(Commit(r, "e3", cancel_timers=["c"]))
    assert store.claim_timers(10**13, 10, 5_000) == ([], None)
    assert store.read_all(r, keys.TIMERS) == {}


def test_timer_of_a_forgotten_run_is_dropped(store: Store) -> None:
    if isinstance(store, RedisClusterStore):
        pytest.skip(
            "on a cluster the claim cannot read the run's keys (another slot): a timer whose run"
            " expired fires, and the engine drops its event as for any unknown run; cancelled"
            " timers leave their bucket (test_timers_are_claimed_when_due_hidden_while_claimed_and_removed)"
        )
    r = rid()
    store.commit(Commit(r, "e1", timers={"a": (1_000, b"ev")}))
    store.commit(Commit(r, "e2", deletes={keys.TIMERS: ["a"]}))  # as if the run's keys expired
    assert store.claim_timers(5_000, 10, 1_000) == ([], None)


def test_commit_deletes_fields(store: Store) -> None:
    r = rid()
    store.commit(Commit(r, "e1", writes={keys.DATA: {"x": b"1", "y": b"2"}}))
    store.commit(Commit(r, "e2", deletes={keys.DATA: ["x", "absent"]}))
    assert store.read_all(r, keys.DATA) == {"y": b"2"}


def test_heartbeat_extends_only_the_current_attempts_lease_and_reports_the_run(store: Store) -> None:
    r = rid()
    assert store.heartbeat(r, "t", 1, 5_000, None).run_status is None
    store.commit(Commit(r, "e1", writes={keys.META: {"status": b"RUNNING"}}))
    beat = store.heartbeat(r, "t", 1, 5_000, b"p1")
    assert (beat.leased, beat.run_status) == (False, "RUNNING")  # no lease granted yet
    store.commit(Commit(r, "e2", writes={keys.LEASES: {"t": b"2:1000"}}))
    assert not store.heartbeat(r, "t", 1, 9_000, None).leased  # attempt 1 was fenced
    assert store.heartbeat(r, "t", 2, 9_000, b"p2").leased
    leases = store.read_all(r, keys.LEASES)
    assert leases["t"] == b"2:9000"
    assert leases[keys.progress_field("t")] == b"p2"
    store.commit(Commit(r, "e3", writes={keys.META: {"status": b"CANCELLED"}}))
    assert store.heartbeat(r, "t", 2, 10_000, None).run_status == "CANCELLED"


def test_pages_of_runs_by_status_flow_and_time(store: Store) -> None:
    for i in range(7):
        flow = "even" if i % 2 == 0 else "odd"
        status = "SUCCESS" if i < 5 else "FAILED"
        store.commit(
            Commit(
                f"r{i}-{rid()}",
                "e",
                writes={keys.META: {"status": status.encode(), "flow": flow.encode()}},
                status_change=("", status),
                created_ms=1000 + i,
                flow=flow,
            )
        )
    page, cursor = store.page_runs(None, None, limit=3)
    assert [c for _, c in page] == [1006, 1005, 1004] and cursor == 1004
    page, cursor = store.page_runs(None, None, before_ms=cursor, limit=3)
    assert [c for _, c in page] == [1003, 1002, 1001]
    page, cursor = store.page_runs(None, None, before_ms=cursor, limit=3)
    assert [c for _, c in page] == [1000] and cursor is None
    assert [c for _, c in store.page_runs("SUCCESS", "even", limit=10)[0]] == [1004, 1002, 1000]
    assert [c for _, c in store.page_runs(None, "odd", limit=10)[0]] == [1005, 1003, 1001]
    assert [c for _, c in store.page_runs("FAILED", None, since_ms=1006, limit=10)[0]] == [1006]
    assert (store.count_runs(None), store.count_runs("SUCCESS"), store.count_runs("FAILED")) == (7, 5, 2)


# --- durability (runner.engine.durability) ------------------------------------------------------


def test_durability_settings_are_readable(store: Store) -> None:
    settings = store.durability_settings()
    assert settings is not None  # both stores here allow it (a managed Redis may answer None)
    if "memory" in settings:
        assert settings == {"memory": "yes"}
    else:
        assert set(settings) == {"appendonly", "appendfsync", "maxmemory-policy", "save"}
    assert isinstance(store.session(), int)


def test_the_epoch_is_set_once_and_kept(store: Store) -> None:
    first = store.epoch("e1")
    assert store.epoch("e2") == first
    assert first == "e1"


def test_a_lost_run_is_recorded_once_and_remembered(store: Store) -> None:
    r = rid()
    assert not store.is_lost(r)
    assert store.record_lost(r, 1_000_000, 60) is True
    assert store.record_lost(r, 1_000_500, 60) is False
    assert store.is_lost(r)
    other = rid()
    assert store.record_lost(other, 1_000_000 + 61_000, 60) is True  # drops entries past keep_s
    assert not store.is_lost(r)
    assert store.is_lost(other)


def test_the_flow_registry_keeps_every_version_and_the_latest(store: Store) -> None:
    name = f"f-{rid()}"
    assert store.get_flow(name, "d1") is None and store.flow_digests(name) == []
    store.put_flow(name, "d1", b"spec-1", b"info-1")
    store.put_flow(name, "d2", b"spec-2", b"info-2")
    assert store.list_flows()[name] == b"info-2"  # the latest
    assert (store.get_flow(name, "d1"), store.get_flow(name, "d2")) == (b"spec-1", b"spec-2")
    assert store.flow_digests(name) == ["d1", "d2"]
    store.put_flow(name, "d1", b"spec-1", b"info-1-again")  # an older version registered again
    assert store.list_flows()[name] == b"info-1-again"
    # runs of the flow are indexed by its name too: neither may take the other's keys
    r = rid()
    meta = {"status": b"RUNNING", "flow": name.encode()}
    run = Commit(r, "e1", writes={keys.META: meta}, status_change=("", "RUNNING"), flow=name, created_ms=5)
    assert store.commit(run).applied
    assert store.page_runs(None, name)[0][0][0] == r
    assert store.get_flow(name, "d2") == b"spec-2"


def test_the_task_catalogue_keeps_every_entry_and_the_latest_apart_from_the_flows(store: Store) -> None:
    name = f"t-{rid()}"
    assert store.get_task(name, "d1") is None and name not in store.list_tasks()
    store.put_task(name, "d1", b"entry-1", b"info-1")
    store.put_task(name, "d2", b"entry-2", b"info-2")
    assert store.list_tasks()[name] == b"info-2"  # the latest
    assert (store.get_task(name, "d1"), store.get_task(name, "d2")) == (b"entry-1", b"entry-2")
    # a flow and a task of one name: neither takes the other's keys
    store.put_flow(name, "d1", b"spec", b"flow-info")
    assert store.get_task(name, "d1") == b"entry-1" and store.list_tasks()[name] == b"info-2"
    assert store.get_flow(name, "d1") == b"spec"


# --- the fleet: workers' heartbeats and the queues runs use -------------------------------


def test_a_worker_beat_keeps_its_latest_record_until_it_is_silent_for_keep_s(store: Store) -> None:
    a, b = f"a-{rid()}", f"b-{rid()}"
    store.beat_worker(a, b"a1", now_ms=1_000, keep_s=60)
    store.beat_worker(b, b"b1", now_ms=2_000, keep_s=60)
    store.beat_worker(a, b"a2", now_ms=3_000, keep_s=60)
    assert store.workers(now_ms=3_000, keep_s=60) == [(a, b"a2", 3_000), (b, b"b1", 2_000)]
    # silent for longer than keep_s: not listed, and the next beat of another forgets it
    assert store.workers(now_ms=62_500, keep_s=60) == [(a, b"a2", 3_000)]
    store.beat_worker(a, b"a3", now_ms=62_500, keep_s=60)
    assert store.workers(now_ms=62_500, keep_s=600) == [(a, b"a3", 62_500)]


def test_noted_queues_are_listed_once_and_forgotten_when_older_than_asked(store: Store) -> None:
    q1, q2 = f"q1-{rid()}", f"q2-{rid()}"
    store.note_queues([q1, q2], now_ms=1_000)
    store.note_queues([q1], now_ms=5_000)
    store.note_queues([], now_ms=6_000)
    assert store.noted_queues(since_ms=0) == sorted([q1, q2])
    assert store.noted_queues(since_ms=2_000) == [q1]
    assert store.noted_queues(since_ms=0) == [q1]  # q2 was forgotten


def test_commits_together_on_a_server_that_lost_its_scripts_load_them_and_apply_once(
    redis_store: RedisStore,
) -> None:
    redis_store.commit(Commit(rid(), "warm", writes={keys.DATA: {"x": b"0"}}))  # scripts loaded
    redis_store.client.script_flush()  # as a restarted server
    a, b = rid(), rid()
    results = redis_store.commit_many(
        [Commit(a, "e1", writes={keys.DATA: {"x": b"1"}}, history=[b"ha"]),
         Commit(b, "e2", writes={keys.DATA: {"x": b"2"}}, history=[b"hb"])]
    )  # fmt: skip
    assert [r.outcome for r in results] == ["applied", "applied"]
    assert (redis_store.history(a), redis_store.history(b)) == ([b"ha"], [b"hb"])


def test_schedules_swap_only_from_the_record_read_and_arm_their_timer(store: Store) -> None:
    """A schedule's record changes by compare-and-swap (the exactly-once of its firings rests
    on it), its next firing's timer is armed with it, and arming again changes nothing."""
    name = f"s{rid()[:10]}"
    assert store.get_schedule(name) is None
    assert store.swap_schedule(name, None, b"v1", 1000)
    assert not store.swap_schedule(name, None, b"other", None)  # exists: no second create
    assert store.swap_schedule(name, None, b"v1", 1000)  # a repeat of the same create
    assert store.get_schedule(name) == b"v1" and store.list_schedules()[name] == b"v1"
    assert not store.swap_schedule(name, b"stale", b"v2", 2000)
    assert store.get_schedule(name) == b"v1"
    store.arm_schedule(name, 1000)  # armed already: one timer
    due, _ = store.claim_timers(1500, 1000, 10_000)
    mine = [t for t in due if keys.schedule_of_timer(t.run_id) == name]
    assert [t.timer_id for t in mine] == ["1000"]
    store.arm_schedule(name, 1000)  # claimed: arming again does not bring it back early
    again, _ = store.claim_timers(1600, 1000, 10_000)
    assert not [t for t in again if keys.schedule_of_timer(t.run_id) == name]
    assert store.swap_schedule(name, b"v1", b"v2", 2000)
    store.remove_timers(mine)
    due, _ = store.claim_timers(2500, 1000, 10_000)
    assert [t.timer_id for t in due if keys.schedule_of_timer(t.run_id) == name] == ["2000"]
    assert store.swap_schedule(name, b"v2", None, None)
    assert store.get_schedule(name) is None and name not in store.list_schedules()
