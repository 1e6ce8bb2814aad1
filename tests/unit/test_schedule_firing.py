"""Engines firing schedules (runner.schedule.firing) on the in-memory store: one run per
scheduled time however often a firing is repeated (two engines, a crash at each step, a
redelivered timer), the overlap policies, catch-up, pause and resume; and the client's
validation of a schedule (runner.client.schedules)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import flow, metrics, protocol, task
from runner.broker import Outgoing
from runner.client import flows as registry
from runner.errors import (
    BrokerError,
    MissingInputError,
    ScheduleConflict,
    ScheduleError,
    ScheduleNotFound,
    StoreUnavailable,
    UnknownFlowError,
    UnknownInputError,
)
from runner.schedule.firing import Firing
from runner.schedule.model import Schedule
from runner.schedule.timing import When, iso
from runner.store import DueTimer, keys
from tests.helpers.harness import CFG, Harness

T0 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)  # after the tests' real now
HOLD = 10_000


@task(provides="sf_out")
def sf_step(x: int) -> int:
    return x


SF_FLOW = flow.linear("sf_flow", sf_step)


def setup(overlap: str = "allow", catchup: str = "all", every_s: int = 60) -> tuple[Harness, Schedule]:
    h = Harness()
    registry.register(h.store, SF_FLOW.compile(), by="test")
    s = Schedule(
        "sf",
        "sf_flow",
        When(every_s=every_s, anchor_ms=T0),
        {"x": 1},
        overlap=overlap,
        catchup=catchup,
        created_ms=T0,
        next_ms=T0 + every_s * 1000,
    )
    assert h.store.swap_schedule("sf", None, s.pack(), s.next_ms)
    return h, s


def claimed(h: Harness, now: int) -> list[DueTimer]:
    due, _ = h.store.claim_timers(now, 100, HOLD)
    return [t for t in due if keys.schedule_of_timer(t.run_id) == "sf"]


def runs(h: Harness) -> list[str]:
    h.pump()
    return sorted(h.store.list_runs(None, 1000))


def step(h: Harness, now: int, firing: Firing | None = None) -> None:
    f = firing or h.engine.schedules
    for t in claimed(h, now):
        f.fire(t, now)


def rid(at_ms: int) -> str:
    return f"sf:{iso(at_ms)}"


def test_each_scheduled_time_starts_one_run_with_its_deterministic_id() -> None:
    h, _ = setup()
    for k in range(1, 4):
        step(h, T0 + k * 60_000 + 50)
    assert runs(h) == [rid(T0 + k * 60_000) for k in range(1, 4)]
    s = h.client.schedules.get("sf")
    assert s.fired == 3 and s.next_ms == T0 + 4 * 60_000 and s.last_run == rid(T0 + 180_000)


def test_two_engines_firing_the_same_timer_start_one_run_and_advance_once() -> None:
    """The timer's hold ran out while the first engine was slow: a second engine claims the
    same firing. Both submit; the run id makes it one run, the swap one advance."""
    h, _ = setup()
    first = claimed(h, T0 + 60_000)
    second = claimed(h, T0 + 60_000 + HOLD + 1)
    assert [t.timer_id for t in first] == [t.timer_id for t in second] == [str(T0 + 60_000)]
    other = Firing(CFG, h.store, h.engine._publish)
    other.fire(second[0], T0 + 60_000 + HOLD + 1)
    h.engine.schedules.fire(first[0], T0 + 60_000)
    assert runs(h) == [rid(T0 + 60_000)]
    assert h.client.schedules.get("sf").fired == 1
    assert h.client.schedules.get("sf").next_ms == T0 + 120_000 + 0 * HOLD  # advanced once, not twice


class Crash(Exception):
    pass


def _crash_once(obj: Any, name: str, error: Exception) -> Callable[[], None]:
    real = getattr(obj, name)
    state = {"armed": True}

    def wrapper(*a: Any, **kw: Any) -> Any:
        if state["armed"]:
            state["armed"] = False
            raise error
        return real(*a, **kw)

    setattr(obj, name, wrapper)
    return lambda: setattr(obj, name, real)


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("get_schedule", StoreUnavailable("down")),  # before anything
        ("reserve", StoreUnavailable("down")),  # before the run's id is reserved
        ("_publish", BrokerError("nacked")),  # reserved, its submit not confirmed
        ("swap_schedule", StoreUnavailable("down")),  # submitted, the schedule not advanced
        ("remove_timers", StoreUnavailable("down")),  # advanced, the timer not forgotten
    ],
)
def test_a_crash_at_any_step_of_a_firing_still_starts_exactly_one_run(where: str, error: Exception) -> None:
    """The engine dies (or the call fails) at one step; the claimed timer comes back after the
    hold and any engine finishes the firing: one run for the time, none for later ones early."""
    h, _ = setup()
    target = h.engine if where == "_publish" else h.store
    restore = _crash_once(target, where, error)
    h.engine.schedules = Firing(CFG, h.store, h.engine._publish)  # sees the wrapped publish
    now = T0 + 60_000 + 10
    with pytest.raises(type(error)):
        step(h, now)
    restore()
    step(h, now + 1)  # still claimed: nothing happens yet
    step(h, now + HOLD + 5)  # the hold is over: an engine finds the timer again
    step(h, now + 2 * HOLD + 10)  # and once more, after any second hold
    assert runs(h) == [rid(T0 + 60_000)]
    s = h.client.schedules.get("sf")
    assert s.next_ms == T0 + 120_000 + 0 and s.fired == 1
    step(h, T0 + 120_000)  # the next firing is armed, once
    assert runs(h) == [rid(T0 + 60_000), rid(T0 + 120_000)]


def test_catch_up_all_starts_every_missed_firing_once() -> None:
    h, _ = setup(catchup="all")
    step(h, T0 + 5 * 60_000 + 30_000)  # four firings were missed
    assert runs(h) == [rid(T0 + k * 60_000) for k in range(1, 6)]
    assert h.client.schedules.get("sf").next_ms == T0 + 6 * 60_000


def test_catch_up_latest_starts_only_the_last_missed_firing() -> None:
    h, _ = setup(catchup="latest")
    step(h, T0 + 5 * 60_000 + 30_000)
    assert runs(h) == [rid(T0 + 5 * 60_000)]
    assert "skipped" in h.client.schedules.get("sf").note


def test_catch_up_none_starts_nothing_long_missed() -> None:
    h, _ = setup(catchup="none")
    step(h, T0 + 5 * 60_000 + 50_000)  # the last firing is 50 s late: missed
    assert runs(h) == []
    step(h, T0 + 6 * 60_000 + 1_000)  # on time again
    assert runs(h) == [rid(T0 + 6 * 60_000)]


def firings(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("ackflow_schedule_firings_total", {"outcome": outcome}) or 0.0


def test_overlap_skip_starts_nothing_while_the_previous_run_runs() -> None:
    h, _ = setup(overlap="skip")
    started, skipped = firings("started"), firings("skipped")
    step(h, T0 + 60_000)
    assert runs(h) == [rid(T0 + 60_000)]  # running: its task is waiting for a worker
    step(h, T0 + 120_000)
    assert runs(h) == [rid(T0 + 60_000)]
    assert "skipped" in h.client.schedules.get("sf").note
    assert (firings("started"), firings("skipped")) == (started + 1, skipped + 1)
    h.ok(h.one(), sf_out=1)
    h.pump()
    step(h, T0 + 180_000)
    assert runs(h) == [rid(T0 + 60_000), rid(T0 + 180_000)]


def test_overlap_allow_starts_runs_side_by_side() -> None:
    h, _ = setup(overlap="allow")
    step(h, T0 + 60_000)
    step(h, T0 + 120_000)
    assert runs(h) == [rid(T0 + 60_000), rid(T0 + 120_000)]


def test_overlap_cancel_previous_cancels_the_running_one() -> None:
    h, _ = setup(overlap="cancel_previous")
    step(h, T0 + 60_000)
    runs(h)
    step(h, T0 + 120_000)
    assert runs(h) == [rid(T0 + 60_000), rid(T0 + 120_000)]
    assert h.client.status(rid(T0 + 60_000)).status == "CANCELLED"
    assert h.client.status(rid(T0 + 120_000)).status == "RUNNING"


def test_overlap_cancel_previous_catching_up_starts_only_the_last_firing() -> None:
    h, _ = setup(overlap="cancel_previous", catchup="all")
    step(h, T0 + 3 * 60_000)
    assert runs(h) == [rid(T0 + 3 * 60_000)]


def test_a_paused_schedule_fires_nothing_and_resumes_after_now() -> None:
    h, _ = setup()
    h.client.schedules.pause("sf")
    step(h, T0 + 60_000)
    assert runs(h) == []
    s = h.client.schedules.resume("sf")
    assert not s.paused and s.next_ms is not None and s.next_ms > protocol.now_ms()


def test_a_firing_of_a_flow_no_longer_registered_starts_nothing_and_says_why() -> None:
    h, s = setup()
    h.store.swap_schedule("sf", s.pack(), s.with_(flow="gone_flow").pack(), None)
    step(h, T0 + 60_000)
    assert runs(h) == []
    got = h.client.schedules.get("sf")
    assert "gone_flow" in got.note and got.next_ms == T0 + 120_000


def test_a_deleted_schedule_fires_nothing() -> None:
    h, _ = setup()
    h.client.schedules.delete("sf")
    step(h, T0 + 60_000)
    assert runs(h) == [] and h.client.schedules.list() == []
    with pytest.raises(ScheduleNotFound):
        h.client.schedules.delete("sf")


def test_the_engine_fires_a_one_shot_with_its_run_id() -> None:
    """`submit --at`: a one-shot schedule whose run has the id asked for, fired by the engine's
    own timer loop (the real clock: it is due at once)."""
    h = Harness()
    registry.register(h.store, SF_FLOW.compile(), by="test")
    now = protocol.now_ms()
    h.client.schedules.add("once", "sf_flow", {"x": 2}, at=now, run_id="my-run")
    h.engine._next_timer_ms = 0
    h.pump()
    assert h.client.status("my-run").status == "RUNNING"
    assert h.client.schedules.get("once").next_ms is None


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"cron": "* * *"}, ScheduleError, "bad cron"),
        ({"cron": "*/5 * * * *", "tz": "Nowhere/City"}, ScheduleError, "time zone"),
        ({"every": "10 minutes"}, ScheduleError, "not a duration"),
        ({"every": 0}, ScheduleError, "seconds"),
        ({}, ScheduleError, "exactly one"),
        ({"cron": "* * * * *", "every": "1m"}, ScheduleError, "exactly one"),
        ({"at": "2020-01-01T00:00Z"}, ScheduleError, "in the past"),
        ({"at": "2099-01-01T00:00"}, ScheduleError, "no zone"),
        ({"at": "2099-01-01T00:00Z", "in_": "5m"}, ScheduleError, "not both"),
        ({"every": "1m", "run_id": "x"}, ScheduleError, "one-shot"),
        ({"every": "1m", "overlap": "sometimes"}, ScheduleError, "overlap"),
        ({"every": "1m", "catchup": "most"}, ScheduleError, "catch-up"),
        ({"every": "1m", "catchup": "none", "catchup_window": "1h"}, ScheduleError, "window"),
        ({"every": "1m", "catchup": "all", "catchup_window": "soon"}, ScheduleError, "duration"),
        ({"every": "1m", "flow": "nope"}, UnknownFlowError, "no flow named"),
        ({"every": "1m", "version": "ffff"}, UnknownFlowError, "no registered version"),
        ({"every": "1m", "inputs": {}}, MissingInputError, "x"),
        ({"every": "1m", "inputs": {"x": 1, "y": 2}}, UnknownInputError, "y"),
        ({"every": "1m", "name": "bad name"}, ScheduleError, "schedule name"),
    ],
)
def test_a_bad_schedule_is_refused_with_a_clear_error(kwargs: dict[str, Any], error: type, says: str) -> None:
    h = Harness()
    registry.register(h.store, SF_FLOW.compile(), by="test")
    args = {"inputs": {"x": 1}, **kwargs}
    name, flow_name = args.pop("name", "ok"), args.pop("flow", "sf_flow")
    with pytest.raises(error, match=says):
        h.client.schedules.add(name, flow_name, **args)
    assert h.client.schedules.list() == []


def test_a_schedule_name_is_taken_once() -> None:
    h = Harness()
    registry.register(h.store, SF_FLOW.compile(), by="test")
    first = h.client.schedules.add("dup", "sf_flow", {"x": 1}, cron="*/5 * * * *", tz="Europe/Paris")
    with pytest.raises(ScheduleConflict):
        h.client.schedules.add("dup", "sf_flow", {"x": 1}, every="1m")
    assert h.client.schedules.get("dup") == first


def test_publish_failure_is_an_outage_not_a_note() -> None:
    """A broker refusal leaves the firing to be retried (it raises), never a skipped time."""
    h, _ = setup()

    def refuse(messages: list[Outgoing]) -> None:
        raise BrokerError("refused")

    with pytest.raises(BrokerError):
        step(h, T0 + 60_000, Firing(CFG, h.store, refuse))
    assert h.client.schedules.get("sf").next_ms == T0 + 60_000


def test_a_pause_during_a_firing_is_not_undone_by_its_advance() -> None:
    """An operator pauses while an engine is firing: the engine's swap finds the record
    changed and loses; the schedule stays paused and nothing more fires."""
    h, _ = setup()

    def publish_then_pause(messages: list[Outgoing]) -> None:
        h.engine._publish(messages)
        h.client.schedules.pause("sf")

    step(h, T0 + 60_000, Firing(CFG, h.store, publish_then_pause))
    assert h.client.schedules.get("sf").paused
    step(h, T0 + 60_000 + HOLD + 1)  # the timer comes back: paused, it is dropped
    step(h, T0 + 180_000)
    assert runs(h) == [rid(T0 + 60_000)] and h.client.schedules.get("sf").paused


class _Faulty:
    """One engine's view of the store: the call named ``fail`` raises once, like a crash there."""

    def __init__(self, store: Any, fail: str | None) -> None:
        self._store = store
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self.fail:
            return real

        def crash(*a: Any, **kw: Any) -> Any:
            self.fail = None
            raise StoreUnavailable(f"crash at {name}")

        return crash


STEPS = st.lists(
    st.tuples(
        st.integers(0, 150_000),  # time passing before this step (ms)
        st.sampled_from([None, "get_schedule", "reserve", "swap_schedule", "remove_timers", "arm_schedule"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS)
def test_any_interleaving_of_engines_and_crashes_starts_each_firing_once(
    steps: list[tuple[int, str | None]],
) -> None:
    """Engines claim the schedule's timer as time passes, each one crashing at any step of a
    firing (or not), a claim held by a crashed one coming back after the hold; then time runs on without faults until every hold is over. Catch-up all:
    the runs are exactly the scheduled times up to the last one fired, each once."""
    h, _ = setup(catchup="all")
    now = T0
    for wait, fail in steps:
        now += wait
        view = _Faulty(h.store, fail)
        firing = Firing(CFG, view, h.engine._publish)  # type: ignore[arg-type]
        due, _ = view.claim_timers(now, 100, HOLD)
        for t in due:
            if keys.schedule_of_timer(t.run_id) == "sf":
                try:
                    firing.fire(t, now)
                except StoreUnavailable:
                    pass  # the engine died here: its claim stays until the hold is over
    for _ in range(4):  # faults over: the holds end, the schedule catches up
        now += HOLD + 1
        step(h, now)
    got = runs(h)
    s = h.client.schedules.get("sf")
    assert s.next_ms is not None and s.next_ms > now - HOLD - 1
    assert got == [rid(t) for t in range(T0 + 60_000, s.next_ms, 60_000)]
