"""Redis durability (finding M4): the verdict on CONFIG values, the guard, and lost runs."""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import metrics, protocol
from runner.broker import ENGINE_QUEUE, Outgoing, task_queue
from runner.broker.local import LocalHub
from runner.client import Client
from runner.config import Config
from runner.engine import Engine, durability
from runner.engine.durability import StoreGuard, judge, vanished_while_active
from runner.errors import ConfigError, RunLost, RunNotFound, StoreNotDurable, StoreUnavailable
from runner.protocol import Event, TaskRequest
from runner.store.memory import MemoryStore
from tests.helpers import flows

DURABLE = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction", "save": ""}
THIS_MACHINE = {"appendonly": "no", "appendfsync": "everysec", "maxmemory-policy": "noeviction", "save": ""}


# --- the verdict -----------------------------------------------------------------------


def test_aof_with_fsync_always_and_noeviction_is_durable() -> None:
    v = judge(DURABLE)
    assert v.durable and v.checked and v.problems == ()
    assert "is durable" in v.describe()


def test_no_aof_says_everything_can_be_lost_and_how_to_fix_it() -> None:
    v = judge(THIS_MACHINE)
    assert not v.durable and v.checked
    [problem] = v.problems
    assert "appendonly is no" in problem and "loses every run's state" in problem
    assert "CONFIG SET appendonly yes" in problem and "appendfsync always" in problem
    assert "nothing is saved at all" in problem


def test_rdb_snapshots_alone_are_not_enough() -> None:
    v = judge({**THIS_MACHINE, "save": "3600 1 300 100"})
    assert not v.durable
    assert "before the last one" in v.problems[0]


def test_everysec_warns_of_about_a_second_on_power_loss() -> None:
    v = judge({**DURABLE, "appendfsync": "everysec"})
    assert not v.durable
    [problem] = v.problems
    assert "about 1 s" in problem and "power loss" in problem and "CONFIG SET appendfsync always" in problem


def test_fsync_no_is_not_durable() -> None:
    v = judge({**DURABLE, "appendfsync": "no"})
    assert not v.durable and "appendfsync is no" in v.problems[0]


@pytest.mark.parametrize(
    ("policy", "what"),
    [("allkeys-lru", "active run"), ("allkeys-random", "active run"), ("volatile-ttl", "finished runs")],
)
def test_an_evicting_policy_says_what_it_may_evict(policy: str, what: str) -> None:
    v = judge({**DURABLE, "maxmemory-policy": policy})
    assert not v.durable
    [problem] = v.problems
    assert what in problem and "CONFIG SET maxmemory-policy noeviction" in problem


def test_settings_that_cannot_be_read_are_not_known_durable() -> None:
    v = judge(None)
    assert not v.durable and not v.checked
    assert "could not be checked" in v.describe()


def test_the_memory_store_is_volatile_by_design() -> None:
    v = judge(MemoryStore().durability_settings())
    assert not v.durable and "by design" in v.problems[0]


@pytest.mark.fuzz
@given(
    aof=st.sampled_from(["yes", "no", ""]),
    fsync=st.sampled_from(["always", "everysec", "no", ""]),
    policy=st.sampled_from(["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", ""]),
    save=st.sampled_from(["", "3600 1"]),
)
def test_durable_exactly_when_aof_fsyncs_always_and_nothing_is_evicted(
    aof: str, fsync: str, policy: str, save: str
) -> None:
    v = judge({"appendonly": aof, "appendfsync": fsync, "maxmemory-policy": policy, "save": save})
    assert v.durable == (aof == "yes" and fsync == "always" and policy == "noeviction")
    assert v.durable == (not v.problems)


def test_a_run_created_within_the_retention_cannot_have_expired() -> None:
    now = 10_000_000
    assert vanished_while_active(now - 1000, now, retention_s=60)
    assert not vanished_while_active(now - 61_000, now, retention_s=60)  # may have expired
    assert not vanished_while_active(0, now, retention_s=60)  # unknown: decides nothing


def test_only_a_positive_int_is_a_creation_time() -> None:
    assert durability.event_created_ms({"run_created": 5}) == 5
    for bad in (0, -3, True, "5", None, 1.5):
        assert durability.event_created_ms({"run_created": bad}) == 0
    assert durability.event_created_ms({}) == 0


# --- the setting -----------------------------------------------------------------------


def test_require_durable_store_reads_true_and_false_words() -> None:
    assert Config.from_env({"ACKFLOW_REQUIRE_DURABLE_STORE": "true"}).require_durable_store is True
    assert Config.from_env({"ACKFLOW_REQUIRE_DURABLE_STORE": "1"}).require_durable_store is True
    assert Config.from_env({"ACKFLOW_REQUIRE_DURABLE_STORE": "false"}).require_durable_store is False
    assert Config.from_env({}).require_durable_store is False
    with pytest.raises(ConfigError, match="ACKFLOW_REQUIRE_DURABLE_STORE='maybe' is not a valid boolean"):
        Config.from_env({"ACKFLOW_REQUIRE_DURABLE_STORE": "maybe"})


# --- the guard -------------------------------------------------------------------------


class FakeRedis(MemoryStore):
    """A memory store that reports chosen CONFIG values and can 'reconnect' or lose its data."""

    def __init__(self, settings: dict[str, str] | None) -> None:
        super().__init__()
        self.settings = settings
        self.connections = 1
        self.config_reads = 0

    def session(self) -> int:
        return self.connections

    def durability_settings(self) -> dict[str, str] | None:
        self.config_reads += 1
        return self.settings

    def flush(self) -> None:
        with self._lock:
            self._runs.clear()
            self._history.clear()
            self._epoch = None
            self._lost.clear()


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("ackflow_store_durable")


def test_guard_warns_once_and_sets_the_gauge(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeRedis(THIS_MACHINE)
    guard = StoreGuard(Config(), store)
    with caplog.at_level(logging.INFO, logger="ackflow.durability"):
        guard.startup()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis is NOT durable" in warnings[0].getMessage()
    assert gauge() == 0
    assert (
        metrics.REGISTRY.get_sample_value(
            "ackflow_store_settings_info",
            {"appendonly": "no", "appendfsync": "everysec", "maxmemory_policy": "noeviction"},
        )
        == 1
    )
    caplog.clear()
    assert guard.recheck_if_reconnected() is False  # no reconnect: no CONFIG read
    assert store.config_reads == 1
    store.connections += 1
    with caplog.at_level(logging.INFO, logger="ackflow.durability"):
        assert guard.recheck_if_reconnected() is False  # same settings, data kept
    assert store.config_reads == 2
    assert not caplog.records  # an unchanged verdict is not repeated
    store.settings = DURABLE
    store.connections += 1
    guard.recheck_if_reconnected()
    assert gauge() == 1


def test_guard_refuses_a_store_not_known_durable_when_required() -> None:
    for settings in (THIS_MACHINE, None):
        with pytest.raises(StoreNotDurable, match="ACKFLOW_REQUIRE_DURABLE_STORE"):
            StoreGuard(Config(require_durable_store=True), FakeRedis(settings)).startup()
    StoreGuard(Config(require_durable_store=True), FakeRedis(DURABLE)).startup()


def test_guard_stops_a_required_engine_when_a_reconnect_finds_redis_not_durable() -> None:
    store = FakeRedis(DURABLE)
    guard = StoreGuard(Config(require_durable_store=True), store)
    guard.startup()
    store.settings = THIS_MACHINE  # a failover to a replica configured otherwise
    store.connections += 1
    with pytest.raises(StoreNotDurable):
        guard.recheck_if_reconnected()


def test_guard_notices_once_that_redis_lost_its_data(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeRedis(DURABLE)
    guard = StoreGuard(Config(), store)
    guard.startup()
    before = metrics.REGISTRY.get_sample_value("ackflow_store_data_losses_total") or 0
    store.flush()
    store.connections += 1  # e.g. Redis restarted without persistence
    with caplog.at_level(logging.ERROR, logger="ackflow.durability"):
        assert guard.recheck_if_reconnected() is True
        assert guard.data_lost() is False  # the new epoch is adopted: reported once
    # guard.startup() logged its verdict at INFO, captured too once an earlier test set the
    # root logger to INFO (logs.setup): only the ERROR line is this test's
    [err] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Redis lost its data" in err.getMessage()
    assert metrics.REGISTRY.get_sample_value("ackflow_store_data_losses_total") == before + 1


def test_keep_checking_reports_a_loss_and_stops_on_a_reconnect_found_not_durable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`ackflow serve` has no loop of its own that touches Redis: `keep_checking` looks at it
    every so often, as an engine does after each reconnect (finding M4: start and reconnect)."""
    store = FakeRedis(DURABLE)
    guard = StoreGuard(Config(require_durable_store=True), store)
    guard.startup()
    store.flush()  # Redis restarted empty, without persistence, on another configuration
    store.settings = THIS_MACHINE
    store.connections += 1
    before = metrics.REGISTRY.get_sample_value("ackflow_store_data_losses_total") or 0
    with caplog.at_level(logging.WARNING, logger="ackflow.durability"):
        refused = durability.keep_checking(guard, threading.Event(), every_s=0)
    assert isinstance(refused, StoreNotDurable)
    assert "refusing to run because ACKFLOW_REQUIRE_DURABLE_STORE is set" in str(refused)
    text = [r.getMessage() for r in caplog.records]
    assert any("Redis lost its data" in t for t in text), text
    assert any("Redis is NOT durable" in t for t in text), text
    assert metrics.REGISTRY.get_sample_value("ackflow_store_data_losses_total") == before + 1
    assert gauge() == 0


def test_keep_checking_rides_out_an_outage_until_stopped(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()

    class Flaky(FakeRedis):
        calls = 0

        def epoch(self, candidate: str) -> str:
            self.calls += 1
            if self.calls == 2:  # the first check after start-up
                raise StoreUnavailable("redis down")
            if self.calls == 4:
                stop.set()  # the test's end: checked twice more after the outage
            return super().epoch(candidate)

    store = Flaky(DURABLE)
    guard = StoreGuard(Config(require_durable_store=True), store)
    guard.startup()
    with caplog.at_level(logging.WARNING, logger="ackflow.durability"):
        assert durability.keep_checking(guard, stop, every_s=0) is None
    assert store.calls == 4
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "could not check the state store" in warning and "redis down" in warning


# --- the engine and the client -----------------------------------------------------------

CFG = Config()


class Harness:
    def __init__(self) -> None:
        self.hub = LocalHub()
        self.store = FakeRedis(DURABLE)
        self.engine = Engine(CFG, self.store, self.hub.connect())
        self.engine.start()
        self.client = Client(CFG, self.store, self.hub.connect)
        self.tasks = self.hub.connect()
        self.tasks.consume([task_queue("default")], 10_000)

    def pump(self) -> None:
        while self.engine.run_once(0):
            pass

    def request(self) -> TaskRequest:
        [d] = self.tasks.poll(0)
        msg = protocol.decode(d.body)
        assert isinstance(msg, TaskRequest)
        self.tasks.ack(d)
        return msg

    def send_result(self, req: TaskRequest, created: bool = True) -> None:
        body: dict[str, object] = {"values": {"v1": 1}, "worker": "w"}
        if created:
            body[durability.CREATED_FIELD] = req.run_created
        event = Event(
            protocol.TASK_SUCCEEDED,
            protocol.result_id(req.run_id, req.task, req.attempt),
            req.run_id,
            req.task,
            req.attempt,
            body,
            protocol.now_ms(),
        )
        self.hub.connect().publish([Outgoing(ENGINE_QUEUE, event.id, protocol.encode(event))])


def lost_total() -> float:
    return metrics.REGISTRY.get_sample_value("ackflow_runs_lost_total") or 0.0


def test_an_event_for_a_run_that_vanished_while_active_is_reported_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    req = h.request()
    assert req.run_created > 0
    h.store.flush()
    before = lost_total()
    with caplog.at_level(logging.WARNING, logger="ackflow.engine"):
        h.send_result(req)
        h.send_result(req)  # a redelivery of it: the run is counted once
        h.pump()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"run {rid} lost: its state vanished from Redis")
    assert not any("expired or never created" in r.getMessage() for r in caplog.records)
    assert lost_total() == before + 1
    with pytest.raises(RunLost, match="was lost"):
        h.client.status(rid)
    with pytest.raises(RunNotFound, match="no run with id 'typo'") as typo:
        h.client.status("typo")
    assert not isinstance(typo.value, RunLost)


def test_an_event_without_a_creation_time_for_an_unknown_run_is_still_routine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    req = h.request()
    with h.store._lock:
        h.store._runs.clear()  # as if it expired; the store itself kept its epoch
    before = lost_total()
    with caplog.at_level(logging.WARNING, logger="ackflow.engine"):
        h.send_result(req, created=False)
        h.pump()
    assert any("expired or never created" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno == logging.ERROR for r in caplog.records)
    assert lost_total() == before


class VanishingStore(MemoryStore):
    """The run's state vanishes while a waiter waits on it (as in a FLUSHDB)."""

    def watch(self, run_id: str):  # type: ignore[no-untyped-def]
        store, inner = self, super().watch(run_id)

        class _Watch:
            def wait(self, timeout_s: float, status_only: bool = False) -> bool:
                with store._lock:
                    store._runs.pop(run_id, None)
                return True

            def close(self) -> None:
                inner.close()

        return _Watch()


def test_wait_reports_a_run_seen_and_then_gone_as_lost() -> None:
    client = Client(CFG, VanishingStore(), LocalHub().connect)
    rid = client.submit(flows.chain(2), {"v0": 0})  # reserved: PENDING until an engine applies it
    with pytest.raises(RunLost, match=r"was lost.*it was PENDING when last seen"):
        client.wait(rid, timeout_s=30)
    with pytest.raises(RunNotFound) as never:  # never seen: a typo, not a loss
        client.wait("never-submitted", timeout_s=30)
    assert not isinstance(never.value, RunLost)
