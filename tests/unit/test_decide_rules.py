"""The decision core as a table: each row is (the run as stored, one event) -> the commit's
writes, outbox and history. `decide` is called directly: no engine, no store, no broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from runner import flow, protocol, task
from runner.decide import Need, View, decide
from runner.define.retry import Retry
from runner.define.spec import FlowSpec
from runner.define.tasks import Registry
from tests.helpers.decide import RULES, Outcome, error, event, run_view, timer

reg = Registry()


@task(provides="x", registry=reg)
def one() -> int:
    return 1


@task(provides="y", registry=reg)
def two(x: int) -> int:
    return x


@task(provides="y", registry=reg, retry=Retry(attempts=3, delay=2.0, jitter=False))
def flaky(x: int) -> int:
    return x


@task(provides="l", registry=reg)
def left(x: int) -> int:
    return x


@task(provides="r", registry=reg)
def right(x: int) -> int:
    return x


@task(provides="out", registry=reg)
def bottom(l: int, r: int) -> int:  # noqa: E741 - the data name
    return l + r


@task(provides="x", registry=reg)
def ra() -> int:
    return 1


@task(provides="y", registry=reg)
def rb(x: int) -> int:
    return x


@task(provides="z", registry=reg)
def rc(y: int) -> int:
    return y


for _t in (ra, rb, rc):
    _t.revert(lambda **kw: None)


CHAIN = flow.linear("chain", one, two).compile(reg)  # one -> two
RETRYING = flow.linear("retrying", one, flaky).compile(reg)
DIAMOND = flow.linear("diamond", one, flow.unordered("mid", left, right), bottom).compile(reg)
REVERTS = flow.linear("reverts", ra, rb, rc).compile(reg)  # every task has a revert handler


@dataclass(frozen=True)
class Row:
    """One decision: the run before, the event, and what the commit must hold."""

    name: str
    spec: FlowSpec
    view: Callable[[FlowSpec], View]
    event: protocol.Event
    run: str | None = None  # the run's new status (None: unchanged)
    tasks: dict[str, str] = field(default_factory=dict)  # exactly the task states written
    sent: list[tuple[str, int, str]] = field(default_factory=list)  # exactly the requests sent
    timers: list[tuple[str, str, int]] = field(default_factory=list)  # exactly the timers set
    moves: list[tuple[str, str, str]] = field(default_factory=list)  # exactly the history moves
    note: str = ""  # a substring of the history notes
    check: Callable[[Outcome], Any] | None = None


def at(
    status: str | None, tasks: dict[str, dict[str, Any]] | None = None, **kw: Any
) -> Callable[[FlowSpec], View]:
    return lambda spec: run_view(spec, status, tasks=tasks or {}, **kw)


def st(status: str, attempt: int = 1, **kw: Any) -> dict[str, Any]:
    return {"status": status, "attempt": attempt, **kw}


RUN_R, SUC, SCH, FAIL = "RUNNING", "SUCCESS", "SCHEDULED", "FAILED"
RUN_MODE, REVERT_MODE = protocol.MODE_RUN, protocol.MODE_REVERT

ROWS = [
    # --- a run's life ---------------------------------------------------------------------
    Row(
        "submit creates the run and schedules its root",
        CHAIN,
        at(None),
        event(protocol.RUN_SUBMIT, spec=CHAIN.to_data(), inputs={}),
        run=RUN_R,
        tasks={"one": SCH},
        sent=[("one", 1, RUN_MODE)],
        moves=[("run", "PENDING", RUN_R), ("one", "PENDING", SCH)],
    ),
    Row(
        "a second submit of a run that exists changes nothing",
        CHAIN,
        at(RUN_R, {"one": st(SCH)}),
        event(protocol.RUN_SUBMIT, spec=CHAIN.to_data(), inputs={}),
        check=lambda o: not o.commit.writes and not o.commit.history,
    ),
    Row(
        "started: SCHEDULED -> RUNNING",
        CHAIN,
        at(RUN_R, {"one": st(SCH)}),
        event(protocol.TASK_STARTED, "one", 1),
        tasks={"one": RUN_R},
        moves=[("one", SCH, RUN_R)],
        check=lambda o: o.states["one"].worker == "w1",
    ),
    Row(
        "succeeded: the result is stored and the successor scheduled",
        CHAIN,
        at(RUN_R, {"one": st(RUN_R)}),
        event(protocol.TASK_SUCCEEDED, "one", 1, values={"x": 5}),
        tasks={"one": SUC, "two": SCH},
        sent=[("two", 1, RUN_MODE)],
        moves=[("one", RUN_R, SUC), ("two", "PENDING", SCH)],
    ),
    Row(
        "the last sink succeeded: the run succeeded",
        CHAIN,
        at(RUN_R, {"one": st(SUC), "two": st(RUN_R)}, data={"x": 5}),
        event(protocol.TASK_SUCCEEDED, "two", 1, values={"y": 5}),
        run=SUC,
        tasks={"two": SUC},
        moves=[("two", RUN_R, SUC), ("run", RUN_R, SUC)],
    ),
    Row(
        "a result overtaking its started event implies the start",
        CHAIN,
        at(RUN_R, {"one": st(SCH)}),
        event(protocol.TASK_SUCCEEDED, "one", 1, values={"x": 5}),
        tasks={"one": SUC, "two": SCH},
        sent=[("two", 1, RUN_MODE)],
        moves=[("one", SCH, RUN_R), ("one", RUN_R, SUC), ("two", "PENDING", SCH)],
    ),
    # --- joins ----------------------------------------------------------------------------
    Row(
        "a join waits for its last predecessor",
        DIAMOND,
        at(RUN_R, {"one": st(SUC), "left": st(RUN_R), "right": st(RUN_R)}),
        event(protocol.TASK_SUCCEEDED, "left", 1, values={"l": 1}),
        tasks={"left": SUC},
        moves=[("left", RUN_R, SUC)],
    ),
    Row(
        "the join fires when its last predecessor succeeds",
        DIAMOND,
        at(RUN_R, {"one": st(SUC), "left": st(SUC), "right": st(RUN_R)}, joins={"bottom": 1}, data={"l": 1}),
        event(protocol.TASK_SUCCEEDED, "right", 1, values={"r": 2}),
        tasks={"right": SUC, "bottom": SCH},
        sent=[("bottom", 1, RUN_MODE)],
        moves=[("right", RUN_R, SUC), ("bottom", "PENDING", SCH)],
    ),
    Row(
        "a duplicate of that success does not fire the join again",
        DIAMOND,
        at(
            RUN_R, {"one": st(SUC), "left": st(SUC), "right": st(SUC), "bottom": st(SCH)}, joins={"bottom": 2}
        ),
        event(protocol.TASK_SUCCEEDED, "right", 1, values={"r": 2}),
        note="ignored: task is already SUCCESS",
        check=lambda o: not o.commit.outbox and "joins" not in o.commit.writes,
    ),
    Row(
        "a result of an earlier attempt is fenced",
        RETRYING,
        at(RUN_R, {"one": st(SUC), "flaky": st(RUN_R, 2)}),
        event(protocol.TASK_SUCCEEDED, "flaky", 1, values={"y": 1}),
        note="fenced: attempt 1 is not the current attempt 2",
    ),
    # --- failure --------------------------------------------------------------------------
    Row(
        "a failure with retries left: FAILED, a retry timer, the run goes on",
        RETRYING,
        at(RUN_R, {"one": st(SUC), "flaky": st(RUN_R)}),
        event(protocol.TASK_FAILED, "flaky", 1, error=error()),
        tasks={"flaky": FAIL},
        timers=[(protocol.TIMER_RETRY, "flaky", 2)],
        moves=[("flaky", RUN_R, FAIL)],
        note="retry 2 of 3 in 2 s",
        check=lambda o: o.states["flaky"].retry_at_ms == 1_000_000 + 2000,
    ),
    Row(
        "the retry timer schedules the next attempt",
        RETRYING,
        at(RUN_R, {"one": st(SUC), "flaky": st(FAIL, retry_at_ms=1)}, data={"x": 1}),
        timer(protocol.TIMER_RETRY, "flaky", 2),
        tasks={"flaky": SCH},
        sent=[("flaky", 2, RUN_MODE)],
        moves=[("flaky", FAIL, SCH)],
    ),
    Row(
        "the last try fails: the run FAILED (nothing to revert)",
        RETRYING,
        at(RUN_R, {"one": st(SUC), "flaky": st(RUN_R, 3)}),
        event(protocol.TASK_FAILED, "flaky", 3, error=error()),
        run=FAIL,
        tasks={"flaky": FAIL},
        moves=[("flaky", RUN_R, FAIL), ("run", RUN_R, FAIL)],
    ),
    Row(
        "no retry policy: the run FAILED at once",
        CHAIN,
        at(RUN_R, {"one": st(SUC), "two": st(RUN_R)}),
        event(protocol.TASK_FAILED, "two", 1, error=error()),
        run=FAIL,
        tasks={"two": FAIL},
        moves=[("two", RUN_R, FAIL), ("run", RUN_R, FAIL)],
    ),
    Row(
        "a failure with completed revertable tasks: REVERTING, the latest reverted first",
        REVERTS,
        at(RUN_R, {"ra": st(SUC), "rb": st(SUC), "rc": st(RUN_R)}, data={"x": 1, "y": 1}),
        event(protocol.TASK_FAILED, "rc", 1, error=error()),
        run="REVERTING",
        tasks={"rc": FAIL, "rb": "REVERTING"},
        sent=[("rb", 1, REVERT_MODE)],
        moves=[("rc", RUN_R, FAIL), ("run", RUN_R, "REVERTING"), ("rb", SUC, "REVERTING")],
    ),
    Row(
        "revert order: rb reverted, then ra",
        REVERTS,
        at("REVERTING", {"ra": st(SUC), "rb": st("REVERTING"), "rc": st(FAIL)}, data={"x": 1}),
        event(protocol.TASK_REVERTED, "rb", 1),
        tasks={"rb": "REVERTED", "ra": "REVERTING"},
        sent=[("ra", 1, REVERT_MODE)],
        moves=[("rb", "REVERTING", "REVERTED"), ("ra", SUC, "REVERTING")],
    ),
    Row(
        "the last revert done: the run REVERTED",
        REVERTS,
        at("REVERTING", {"ra": st("REVERTING"), "rb": st("REVERTED"), "rc": st(FAIL)}),
        event(protocol.TASK_REVERTED, "ra", 1),
        run="REVERTED",
        tasks={"ra": "REVERTED"},
        moves=[("ra", "REVERTING", "REVERTED"), ("run", "REVERTING", "REVERTED")],
    ),
    Row(
        "a predecessor is not reverted while a successor still runs",
        REVERTS,
        at(
            RUN_R,
            {"ra": st(SUC), "rb": st(RUN_R)},
            meta={
                "deadline_timer": protocol.timer_id(protocol.TIMER_DEADLINE, "r1").encode(),
                "deadline_s": b"5",
            },
        ),
        timer(protocol.TIMER_DEADLINE),
        run="REVERTING",
        moves=[("run", RUN_R, "REVERTING")],
        check=lambda o: not o.commit.outbox,  # ra waits for rb
    ),
    Row(
        "...and is reverted once that successor's success is reverted",
        REVERTS,
        at("REVERTING", {"ra": st(SUC), "rb": st("REVERTING"), "rc": st("SKIPPED")}, data={"x": 1}),
        event(protocol.TASK_REVERTED, "rb", 1),
        tasks={"rb": "REVERTED", "ra": "REVERTING"},
        sent=[("ra", 1, REVERT_MODE)],
        moves=[("rb", "REVERTING", "REVERTED"), ("ra", SUC, "REVERTING")],
    ),
    # --- timers ---------------------------------------------------------------------------
    Row(
        "a retry timer for an attempt that is not next is refused",
        RETRYING,
        at(RUN_R, {"one": st(SUC), "flaky": st(RUN_R, 2)}),
        timer(protocol.TIMER_RETRY, "flaky", 2),
        note="retry timer ignored: the task moved on",
    ),
    Row(
        "a timeout of an earlier attempt is fenced",
        RETRYING,
        at(RUN_R, {"one": st(SUC), "flaky": st(RUN_R, 2)}),
        timer(protocol.TIMER_TIMEOUT, "flaky", 1),
        note="fenced: attempt 1 is not the current attempt 2",
    ),
    Row(
        "a retry timer that finds the run failed starts nothing",
        RETRYING,
        at(FAIL, {"one": st(SUC), "flaky": st(FAIL, retry_at_ms=1)}),
        timer(protocol.TIMER_RETRY, "flaky", 2),
        note="retry not started: run is FAILED",
    ),
    # --- completions from outside ---------------------------------------------------------
    Row(
        "an early completion (the task still RUNNING) is its result",
        CHAIN,
        at(RUN_R, {"one": st(RUN_R)}),
        event(protocol.TASK_COMPLETE, "one", 1, by="ops", values={"x": 3}),
        tasks={"one": SUC, "two": SCH},
        sent=[("two", 1, RUN_MODE)],
        moves=[("one", RUN_R, SUC), ("two", "PENDING", SCH)],
        note="completed from outside",
    ),
    Row(
        "a completion of a WAITING task",
        CHAIN,
        at(RUN_R, {"one": st("WAITING")}),
        event(protocol.TASK_COMPLETE, "one", 1, by="ops", values={"x": 3}),
        tasks={"one": SUC, "two": SCH},
        sent=[("two", 1, RUN_MODE)],
    ),
    Row(
        "a late completion (already SUCCESS) is ignored",
        CHAIN,
        at(RUN_R, {"one": st(SUC), "two": st(SCH)}),
        event(protocol.TASK_COMPLETE, "one", 1, by="ops", values={"x": 3}),
        note="ignored: task is already SUCCESS",
    ),
    Row(
        "a completion of a cancelled run is refused",
        CHAIN,
        at("CANCELLED", {"one": st("WAITING")}),
        event(protocol.TASK_COMPLETE, "one", 1, by="ops", values={"x": 3}),
        note="completion refused: the run is CANCELLED",
    ),
    # --- run control ----------------------------------------------------------------------
    Row(
        "pause of a running run",
        CHAIN,
        at(RUN_R, {"one": st(RUN_R)}),
        event(protocol.RUN_PAUSE, by="ops"),
        run="PAUSED",
        moves=[("run", RUN_R, "PAUSED")],
    ),
    Row(
        "a paused run holds what becomes ready",
        CHAIN,
        at("PAUSED", {"one": st(RUN_R)}),
        event(protocol.TASK_SUCCEEDED, "one", 1, values={"x": 1}),
        tasks={"one": SUC},
        note="held: the run is paused",
        check=lambda o: not o.commit.outbox,
    ),
    Row(
        "resume releases what was held",
        CHAIN,
        at("PAUSED", {"one": st(SUC)}, meta={"held": [["two", 1]]}, data={"x": 1}),
        event(protocol.RUN_RESUME, by="ops"),
        run=RUN_R,
        tasks={"two": SCH},
        sent=[("two", 1, RUN_MODE)],
    ),
    Row(
        "retry of a failed run sends the failed task again",
        CHAIN,
        at(FAIL, {"one": st(SUC), "two": st(FAIL)}, data={"x": 1}),
        event(protocol.RUN_RETRY, by="ops"),
        run=RUN_R,
        tasks={"two": SCH},
        sent=[("two", 2, RUN_MODE)],
    ),
    Row(
        "cancel skips what has not started",
        CHAIN,
        at(RUN_R, {"one": st(SCH)}),
        event(protocol.RUN_CANCEL, by="ops"),
        run="CANCELLED",
        tasks={"one": "SKIPPED", "two": "SKIPPED"},
    ),
    *[
        Row(f"{kind} refused while the run is {status}", CHAIN, at(status), event(kind, by="ops"), note=note)
        for kind, status, note in [
            (protocol.RUN_PAUSE, "PAUSED", "pause ignored: the run is PAUSED"),
            (protocol.RUN_PAUSE, FAIL, "pause ignored: the run is FAILED"),
            (protocol.RUN_RESUME, RUN_R, "resume ignored: the run is RUNNING"),
            (protocol.RUN_RETRY, RUN_R, "retry ignored: the run is RUNNING"),
            (protocol.RUN_RETRY, SUC, "retry ignored: the run is SUCCESS"),
            (protocol.RUN_CANCEL, SUC, "cancel ignored: the run is SUCCESS"),
            (protocol.RUN_CANCEL, "CANCELLED", "cancel ignored: the run is CANCELLED"),
        ]
    ],
    Row(
        "retry refused once compensation has run",
        REVERTS,
        at(FAIL, {"ra": st("REVERTED"), "rb": st(FAIL)}),
        event(protocol.RUN_RETRY, by="ops"),
        note="retry refused: the run's compensation has run",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_decide(row: Row) -> None:
    out = Outcome.of(decide(row.event, row.view(row.spec), RULES))
    assert out.run == row.run
    assert out.tasks == row.tasks
    assert out.sent == sorted(row.sent)
    assert out.timers == sorted(row.timers)
    if row.moves:
        assert out.moves() == row.moves
    elif not row.tasks and row.run is None:  # a refusal: recorded, nothing moved
        assert out.moves() == []
    assert row.note in out.notes()
    if row.check is not None:
        assert row.check(out)


def test_a_view_that_lacks_a_field_raises_need_for_it() -> None:
    view = run_view(CHAIN, RUN_R, tasks={"one": {"status": RUN_R, "attempt": 1}}, full=False)
    view.specs = {}
    with pytest.raises(Need) as asked:
        decide(event(protocol.TASK_SUCCEEDED, "one", 1, values={"x": 1}), view, RULES)
    assert asked.value.parts == {"spec": ["one"]}
