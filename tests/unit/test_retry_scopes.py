"""Retry controllers on a flow (issue 16, item 1), as TaskFlow documents its retry atoms:

- ``Times(n)``: the scope runs up to n times; its value is the 1-based attempt number;
- ``ForEach(values)`` / ``ParameterizedForEach(rebind=...)``: one attempt per value, in order,
  until one succeeds;
- between attempts the scope's completed tasks are reverted, successors first, and only
  them (tasks before the scope keep their results); its still-active tasks are waited for;
- exhausted, the failure goes to the enclosing scope's controller, or to the run's
  compensation; ``revert_all=True`` reverts the whole run whatever encloses the scope;
- task attempt numbers keep increasing across scope attempts (unique request/result ids),
  so a redelivered or late report of an earlier attempt is fenced.

Driven event by event on the in-memory store and transport (`Harness`).
"""

from __future__ import annotations

from typing import Any

import pytest

from runner import Failure, ForEach, ParameterizedForEach, Retry, Times, flow, protocol, states, task
from runner.define.tasks import Registry
from runner.errors import FlowDefinitionError
from runner.protocol import TaskRequest
from tests.helpers.harness import Harness

reg = Registry()


@task(provides="s", registry=reg)
def src() -> int:
    return 1


@src.revert
def src_undo(result: int) -> None:
    return None


@task(provides="x", registry=reg)
def first(s: int, attempt: int) -> int:
    return s + attempt


@first.revert
def first_undo(result: int) -> None:
    return None


@task(provides="y", registry=reg)
def second(x: int) -> int:
    return x


@second.revert
def second_undo(result: int) -> None:
    return None


@task(provides="z", registry=reg)
def after(y: int) -> int:
    return y


@task(provides="u", registry=reg)
def use(s: int, host: str) -> str:
    return host


@use.revert
def use_undo(result: str) -> None:
    return None


@task(provides="p", registry=reg)
def par_a(s: int) -> int:
    return 1


@par_a.revert
def par_a_undo(result: int) -> None:
    return None


@task(provides="q", registry=reg)
def par_b(s: int) -> int:
    return 2


@par_b.revert
def par_b_undo(result: int) -> None:
    return None


def times_flow(n: int, **kw: Any) -> Any:
    inner = flow.linear("scope", first, second, retry=Times(n, provides="attempt", **kw))
    return flow.linear("top", src, inner, after).compile(reg)


def scope_history(h: Harness, rid: str, scope: str) -> list[tuple[str, str, int, Any]]:
    return [
        (e.old, e.new, e.attempt, e.extra.get("value")) for e in h.client.history(rid) if e.scope == scope
    ]


def reverts(reqs: list[TaskRequest]) -> list[tuple[str, int]]:
    return [(r.task, r.attempt) for r in reqs if r.mode == protocol.MODE_REVERT]


def start(h: Harness, spec: Any, inputs: dict[str, Any] | None = None) -> str:
    rid = h.client.submit(spec, inputs or {})
    h.pump()
    h.ok(h.one(), s=1)
    return rid


# --- Times ------------------------------------------------------------------------------


def test_times_reverts_the_scope_between_attempts_then_runs_it_again_with_the_next_number() -> None:
    h = Harness()
    rid = start(h, times_flow(3))
    req = h.one()
    assert (req.task, req.attempt, req.args) == ("first", 1, {"s": 1, "attempt": 1})
    h.ok(req, x=2)
    h.fail(h.one())  # second fails for good (no retry policy of its own)
    undo = h.one()  # only the scope's completed task, not src before the scope
    assert (undo.task, undo.mode, undo.attempt, undo.result) == ("first", protocol.MODE_REVERT, 1, 2)
    assert h.status(rid)[0] == states.RUNNING
    h.reverted(undo)
    again = h.one()
    # the task's attempt numbers keep increasing: its request and result ids stay unique
    assert (again.task, again.mode, again.attempt, again.args) == ("first", "run", 2, {"s": 1, "attempt": 2})
    h.ok(again, x=3)
    sec = h.one()
    assert (sec.task, sec.attempt, sec.args) == ("second", 2, {"x": 3})
    h.ok(sec, y=3)
    h.ok(h.one(), z=3)
    status, tasks = h.status(rid)
    assert status == states.SUCCESS and tasks["src"] == states.SUCCESS
    assert h.client.status(rid).result == {"z": 3}
    assert scope_history(h, rid, "scope") == [
        ("PENDING", "RUNNING", 1, 1),
        ("RUNNING", "REVERTING", 1, None),
        ("REVERTING", "RUNNING", 2, 2),
    ]


def test_reverts_between_attempts_go_successors_first_and_the_failed_task_is_not_retried_by_the_scope_twice() -> (
    None
):
    h = Harness()
    inner = flow.linear("scope", first, second, after, retry=Times(2, provides="attempt"))
    rid = start(h, flow.linear("top", src, inner).compile(reg))
    h.ok(h.one(), x=2)
    h.ok(h.one(), y=2)
    h.fail(h.one())  # after (no revert handler) fails
    undo = h.one()
    assert reverts([undo]) == [("second", 1)]
    h.reverted(undo)
    undo = h.one()
    assert reverts([undo]) == [("first", 1)]
    h.reverted(undo)
    assert [(r.task, r.attempt) for r in h.requests()] == [("first", 2)]
    assert h.status(rid)[1]["after"] == states.PENDING


def test_times_exhausted_goes_to_the_run_compensation_which_reverts_everything() -> None:
    h = Harness()
    rid = start(h, times_flow(2))
    h.ok(h.one(), x=2)
    h.fail(h.one())
    h.reverted(h.one())  # first, attempt 1
    h.ok(h.one(), x=3)
    h.fail(h.one())  # second attempt of the scope fails: exhausted
    order = []
    for _ in range(2):
        undo = h.one()
        order.append((undo.task, undo.attempt))
        h.reverted(undo)
    assert order == [("first", 2), ("src", 1)]
    info = h.client.status(rid)
    assert info.status == states.REVERTED
    assert info.error is not None and info.error["task"] == "second" and info.error["scope"] == "scope"
    assert scope_history(h, rid, "scope")[-1][:3] == ("RUNNING", "FAILED", 2)


def test_a_scope_waits_for_its_active_tasks_before_reverting() -> None:
    h = Harness()
    inner = flow.unordered("both", par_a, par_b, first, retry=Times(2, provides="attempt"))
    rid = start(h, flow.linear("top", src, inner).compile(reg))
    reqs = h.by_task()
    h.ok(reqs["first"], x=2)
    h.fail(reqs["par_a"])  # par_b still running: nothing is reverted yet
    assert h.requests() == []
    assert h.status(rid)[1]["par_b"] == states.SCHEDULED
    h.ok(reqs["par_b"], q=2)  # it finished: reverted too, and nothing follows it
    first_undo_ = h.requests()
    assert len(first_undo_) == 1 and first_undo_[0].mode == protocol.MODE_REVERT
    h.reverted(first_undo_[0])
    second_undo_ = h.one()
    assert second_undo_.mode == protocol.MODE_REVERT
    h.reverted(second_undo_)
    assert sorted((r.task, r.attempt) for r in h.requests()) == [("first", 2), ("par_a", 2), ("par_b", 2)]


def test_a_redelivered_or_late_report_of_an_earlier_scope_attempt_is_fenced() -> None:
    h = Harness()
    rid = start(h, times_flow(3))
    old = h.one()
    h.ok(old, x=2)
    failed = h.one()
    h.fail(failed)
    h.reverted(h.one())
    again = h.one()
    h.send(h.result(old, x=99))  # the first attempt's result, redelivered
    h.fail(failed)  # and the failure of attempt 1 of second, again
    h.pump()
    assert h.requests() == []
    h.ok(again, x=3)
    h.ok(h.one(), y=3)
    h.ok(h.one(), z=3)
    assert h.client.status(rid).result == {"z": 3}


# --- ForEach, ParameterizedForEach ----------------------------------------------------------


def test_for_each_tries_each_value_in_turn_until_one_succeeds() -> None:
    h = Harness()
    inner = flow.linear("hosts", use, retry=ForEach(["a", "b", "c"], provides="host"))
    rid = start(h, flow.linear("top", src, inner).compile(reg))
    seen = []
    for outcome in ("fail", "fail", "ok"):
        req = h.one()
        seen.append(req.args["host"])
        if outcome == "fail":
            h.fail(req)  # use's revert handler takes no failure: nothing to revert
        else:
            h.ok(req, u=req.args["host"])
    assert seen == ["a", "b", "c"]
    assert h.client.status(rid).status == states.SUCCESS
    assert [v for _, new, _, v in scope_history(h, rid, "hosts") if new == "RUNNING"] == ["a", "b", "c"]


def test_for_each_exhausted_fails_the_run() -> None:
    h = Harness()
    inner = flow.linear("hosts", use, retry=ForEach(["a"], provides="host"))
    rid = start(h, flow.linear("top", src, inner).compile(reg))
    h.fail(h.one())
    h.reverted(h.one())  # src, by the run's compensation
    assert h.client.status(rid).status == states.REVERTED


def test_parameterized_for_each_takes_its_values_from_a_run_input() -> None:
    h = Harness()
    inner = flow.linear("hosts", use, retry=ParameterizedForEach(rebind="candidates", provides="host"))
    spec = flow.linear("top", src, inner).compile(reg)
    assert spec.inputs == ["candidates"]
    rid = start(h, spec, {"candidates": ["h1", "h2"]})
    req = h.one()
    assert req.args == {"s": 1, "host": "h1"}
    h.fail(req)
    req = h.one()
    assert (req.attempt, req.args) == (2, {"s": 1, "host": "h2"})
    h.ok(req, u="h2")
    assert h.client.status(rid).result == {"u": "h2"}


def test_parameterized_for_each_over_an_empty_list_fails_the_run() -> None:
    h = Harness()
    inner = flow.linear("hosts", use, retry=ParameterizedForEach(rebind="candidates", provides="host"))
    rid = start(h, flow.linear("top", src, inner).compile(reg), {"candidates": []})
    info = h.client.status(rid)
    assert info.error is not None and info.error["type"] == "RetryExhausted"


# --- nesting, revert_all ----------------------------------------------------------------


def nested(revert_all: bool) -> Any:
    inner = flow.linear("inner", use, retry=ForEach(["a", "b"], provides="host", revert_all=revert_all))
    outer = flow.linear("outer", first, inner, retry=Times(2, provides="attempt"))
    return flow.linear("top", src, outer).compile(reg)


def test_an_exhausted_inner_scope_hands_its_failure_to_the_outer_controller() -> None:
    h = Harness()
    rid = start(h, nested(False))
    h.ok(h.one(), x=2)  # first, outer attempt 1
    req = h.one()
    assert (req.task, req.args["host"]) == ("use", "a")
    h.fail(req)  # inner: next value
    req = h.one()
    assert (req.task, req.attempt, req.args["host"]) == ("use", 2, "b")
    h.fail(req)  # inner exhausted: the outer scope reverts first (and only it), then runs again
    undo = h.one()
    assert reverts([undo]) == [("first", 1)]
    h.reverted(undo)
    req = h.one()
    assert (req.task, req.attempt, req.args["attempt"]) == ("first", 2, 2)
    h.ok(req, x=3)
    req = h.one()  # the inner scope starts over from its first value
    assert (req.task, req.attempt, req.args["host"]) == ("use", 3, "a")
    h.ok(req, u="a")
    assert h.client.status(rid).status == states.SUCCESS
    assert [v for _, new, _, v in scope_history(h, rid, "inner") if new == "RUNNING"] == ["a", "b", "a"]
    assert [v for _, new, _, v in scope_history(h, rid, "outer") if new == "RUNNING"] == [1, 2]


def test_revert_all_reverts_the_whole_run_whatever_encloses_the_scope() -> None:
    h = Harness()
    rid = start(h, nested(True))
    h.ok(h.one(), x=2)
    h.fail(h.one())
    h.fail(h.one())  # inner exhausted, with revert_all: the outer controller is not asked
    order = []
    while h.client.status(rid).status == states.REVERTING:
        undo = h.one()
        order.append(undo.task)
        h.reverted(undo)
    assert order == ["first", "src"]
    assert h.client.status(rid).status == states.REVERTED


# --- compile ----------------------------------------------------------------------------


def test_the_provided_value_is_not_a_run_input_and_only_the_scope_may_read_it() -> None:
    assert times_flow(2).inputs == []
    assert times_flow(2).tasks["first"].scope == "scope"
    with pytest.raises(FlowDefinitionError, match="only to the tasks of its flow"):
        flow.linear("top", src, flow.linear("sc", second, retry=Times(2, provides="attempt")), first).compile(
            reg
        )


def test_a_task_after_a_graph_scope_waits_for_the_whole_scope() -> None:
    inner = flow.graph("sc", first, par_a, retry=Times(2, provides="attempt"))
    spec = flow.graph("top", src, inner, second).compile(reg)  # second needs first's x
    assert sorted(spec.tasks["second"].preds) == ["first", "par_a"]


def test_a_flow_retry_takes_a_controller() -> None:
    with pytest.raises(FlowDefinitionError, match="Times, ForEach or ParameterizedForEach"):
        flow.linear("sc", first, retry=3)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError):
        Times(0)
    with pytest.raises(FlowDefinitionError):
        ForEach([])


# --- with the rest: task retry policies, failed-task reverts, graphs, provided values ----------


@task(provides="w", registry=reg)
def breaks(s: int, attempt: int) -> int:
    raise ValueError("breaks")


@breaks.revert
def breaks_undo(s: int, result: Any, failure: Failure | None) -> None:
    return None


@task(provides="cands", registry=reg)
def candidates(s: int) -> list[str]:
    return ["h1", "h2"]


def test_the_tasks_own_retry_policy_is_spent_first_and_is_fresh_in_the_next_scope_attempt() -> None:
    h = Harness()
    inner = flow.linear("sc", second.bind(retry=Retry(attempts=2, delay=0)), retry=Times(2))
    rid = h.client.submit(flow.linear("top", inner).compile(reg), {"x": 1})
    h.pump()
    attempts = []
    for _ in range(3):
        req = h.one()
        attempts.append(req.attempt)
        h.fail(req)
    req = h.one()
    attempts.append(req.attempt)
    assert attempts == [1, 2, 3, 4]  # 2 tries of its policy per scope attempt, ids unique
    h.ok(req, y=1)
    assert h.client.status(rid).status == states.SUCCESS


def test_the_failed_task_is_reverted_with_its_failure_between_attempts_then_its_predecessor() -> None:
    h = Harness()
    inner = flow.linear("sc", first, breaks, retry=Times(2, provides="attempt"))
    start(h, flow.linear("top", src, inner).compile(reg))
    h.ok(h.one(), x=2)
    h.fail(h.one())
    undo = h.one()
    assert (undo.task, undo.mode, undo.result) == ("breaks", protocol.MODE_REVERT, None)
    assert undo.failure is not None and undo.failure["type"] == "ValueError"
    h.reverted(undo)
    assert reverts([h.one()]) == [("first", 1)]


def test_a_graph_scope_counts_its_successors_joins_again_when_it_runs_again() -> None:
    h = Harness()
    inner = flow.graph("sc", par_a, par_b, retry=Times(2))
    spec = flow.graph(
        "top", src, inner, flow.graph("tail_flow", after.bind(name="tail", rebind={"y": "p"}))
    ).compile(reg)
    rid = start(h, spec)
    reqs = h.by_task()
    h.ok(reqs["par_a"], p=1)  # one exit done: tail waits for the other
    h.fail(reqs["par_b"])
    h.reverted(h.one())  # par_a
    again = h.by_task()
    assert sorted((r.task, r.attempt) for r in again.values()) == [("par_a", 2), ("par_b", 2)]
    h.ok(again["par_a"], p=5)
    assert h.requests() == []  # tail still waits for par_b: par_a's first success no longer counts
    h.ok(again["par_b"], q=2)
    tail = h.one()
    assert (tail.task, tail.args) == ("tail", {"y": 5})
    h.ok(tail, z=5)
    assert h.client.status(rid).result == {"z": 5}


def test_parameterized_for_each_over_a_value_provided_before_the_scope() -> None:
    h = Harness()
    inner = flow.linear("hosts", use, retry=ParameterizedForEach(rebind="cands", provides="host"))
    spec = flow.linear("top", src, candidates, inner).compile(reg)
    assert spec.inputs == [] and "candidates" in spec.tasks["use"].preds
    rid = start(h, spec)
    h.ok(h.one(), cands=["h1", "h2"])
    h.fail(h.one())
    req = h.one()
    assert req.args["host"] == "h2"
    h.ok(req, u="h2")
    assert h.client.status(rid).status == states.SUCCESS


def test_the_history_shows_the_controller_and_each_attempts_value() -> None:
    h = Harness()
    rid = start(h, times_flow(3))
    h.ok(h.one(), x=2)
    h.fail(h.one())
    h.reverted(h.one())
    lines = [e.describe() for e in h.client.history(rid) if e.scope == "scope"]
    assert lines[0] == "flow scope [times] (attempt 1): PENDING -> RUNNING  (attempt 1 of 3)  value=1"
    assert lines[1].startswith(
        "flow scope [times] (attempt 1): RUNNING -> REVERTING  (attempt 1 failed: ValueError"
    )
    assert lines[2] == "flow scope [times] (attempt 2): REVERTING -> RUNNING  (attempt 2 of 3)  value=2"


def test_local_mode_runs_a_retry_scope_end_to_end() -> None:
    from runner.local import LocalRuntime

    with LocalRuntime(concurrency=2, registry=reg) as rt:
        info = rt.run(
            flow.linear("top", src, flow.linear("sc", flaky, retry=Times(3, provides="attempt"))).compile(
                reg
            ),
            {},
            timeout_s=60,
        )
    assert info.status == states.SUCCESS and info.result == {"f": 3}


@task(provides="f", registry=reg)
def flaky(attempt: int) -> int:
    if attempt < 3:
        raise ValueError(f"attempt {attempt}")
    return attempt


def test_a_scope_that_reverts_while_the_run_is_paused_runs_again_on_resume() -> None:
    h = Harness()
    rid = start(h, times_flow(2))
    h.ok(h.one(), x=2)
    sec = h.one()
    h.control(rid, protocol.RUN_PAUSE)
    h.fail(sec)
    h.reverted(h.one())  # compensation of the scope goes on while paused
    assert h.requests() == []  # its next attempt is held
    h.control(rid, protocol.RUN_RESUME)
    req = h.one()
    assert (req.task, req.attempt, req.args["attempt"]) == ("first", 2, 2)


def test_retrying_a_run_failed_by_an_exhausted_scope_reruns_the_failed_task_once_more() -> None:
    h = Harness()
    rid = h.client.submit(
        flow.linear("top", flow.linear("sc", second, retry=Times(2))).compile(reg), {"x": 1}
    )
    h.pump()
    h.fail(h.one())
    h.fail(h.one())  # exhausted: nothing to revert (second's handler takes no failure)
    assert h.client.status(rid).status == states.FAILED
    h.control(rid, protocol.RUN_RETRY)
    req = h.one()
    assert req.attempt == 3
    h.fail(req)  # the controller does not try again
    assert h.client.status(rid).status == states.FAILED and h.requests() == []
    h.control(rid, protocol.RUN_RETRY)
    h.ok(h.one(), y=1)
    assert h.client.status(rid).status == states.SUCCESS


@task(provides="na", registry=reg)
def nr_a() -> int:
    return 1


@task(provides="nb", registry=reg)
def nr_b() -> int:
    return 2


def test_a_run_failed_while_a_scope_waited_to_revert_goes_on_with_the_scope_when_retried() -> None:
    h = Harness()
    inner = flow.unordered("both", nr_a, nr_b, retry=Times(2))
    rid = h.client.submit(flow.unordered("top", inner, after).compile(reg), {"y": 1})
    h.pump()
    reqs = h.by_task()
    h.fail(reqs["nr_a"])  # the scope waits for nr_b before running again
    h.fail(reqs["after"])  # outside the scope: the run fails (no revert handlers)
    assert h.client.status(rid).status == states.FAILED
    h.ok(reqs["nr_b"], nb=2)  # recorded; the run failed, nothing follows
    assert h.requests() == []
    h.control(rid, protocol.RUN_RETRY)  # the bug: the scope stayed reverting, the run stalled
    assert sorted((r.task, r.attempt) for r in h.requests()) == [("after", 2), ("nr_a", 2), ("nr_b", 2)]


@task(provides="nc", registry=reg)
def nr_c(nb: int) -> int:
    return nb


@task(provides="nd", registry=reg)
def nr_d() -> int:
    return 4


def test_a_request_held_by_a_pause_is_dropped_when_its_scope_runs_again() -> None:
    h = Harness()
    rid = h.client.submit(
        flow.linear("top", flow.graph("sc", nr_a, nr_b, nr_c, retry=Times(2))).compile(reg), {}
    )
    h.pump()
    reqs = h.by_task()
    h.control(rid, protocol.RUN_PAUSE)
    h.ok(reqs["nr_b"], nb=2)  # nr_c is ready: held
    h.fail(reqs["nr_a"])  # the scope runs again (nothing to revert), its entries held
    h.control(rid, protocol.RUN_RESUME)
    # the bug: nr_c's held request of the first attempt was released, before nr_b ran again
    assert sorted((r.task, r.attempt) for r in h.requests()) == [("nr_a", 2), ("nr_b", 2)]


def test_a_request_held_by_a_pause_is_not_started_while_its_scope_reverts() -> None:
    h = Harness()
    rid = h.client.submit(
        flow.linear("top", flow.graph("sc", nr_a, nr_b, nr_c, nr_d, retry=Times(2))).compile(reg), {}
    )
    h.pump()
    reqs = h.by_task()
    h.control(rid, protocol.RUN_PAUSE)
    h.ok(reqs["nr_b"], nb=2)  # nr_c is ready: held
    h.fail(reqs["nr_a"])  # the scope waits for nr_d
    h.control(rid, protocol.RUN_RESUME)
    assert h.requests() == []  # nr_c: not started, its flow is reverting
    h.ok(reqs["nr_d"], nd=4)
    assert sorted((r.task, r.attempt) for r in h.requests()) == [("nr_a", 2), ("nr_b", 2), ("nr_d", 2)]


def test_the_dashboard_shows_the_controller_and_the_value_of_each_scope_attempt() -> None:
    from runner.ops.dashboard import pages

    h = Harness()
    inner = flow.linear("hosts", use, retry=ForEach(["a", "b"], provides="host"))
    rid = start(h, flow.linear("top", src, inner).compile(reg))
    h.fail(h.one())
    page, _ = pages.run_page(h.client, rid, operator=False)
    assert "retry controller for_each, value &#x27;a&#x27;" in page
    assert "retry controller for_each, value &#x27;b&#x27;" in page


def test_an_inner_failure_while_the_outer_scope_reverts_goes_to_the_outer_one() -> None:
    h = Harness()
    inner = flow.linear("inner", nr_d, retry=Times(3))
    rid = h.client.submit(
        flow.linear("top", flow.unordered("outer", nr_a, inner, retry=Times(2))).compile(reg), {}
    )
    h.pump()
    reqs = h.by_task()
    h.fail(reqs["nr_a"])  # the outer scope waits for nr_d
    h.fail(reqs["nr_d"])  # the bug: the inner scope ran again, its task held back, the run stalled
    assert sorted((r.task, r.attempt) for r in h.requests()) == [("nr_a", 2), ("nr_d", 2)]
    assert [e.new for e in h.client.history(rid) if e.scope == "inner"] == ["RUNNING", "RUNNING"]


def test_a_request_handed_back_unstarted_while_its_scope_waits_lets_the_scope_go_on() -> None:
    from workers.execute import not_started
    from workers.skip import PAUSED_REASON

    h = Harness()
    rid = h.client.submit(
        flow.linear("top", flow.unordered("sc", nr_a, nr_d, retry=Times(2))).compile(reg), {}
    )
    h.pump()
    reqs = h.by_task()
    h.control(rid, protocol.RUN_PAUSE)
    h.control(rid, protocol.RUN_RESUME)
    h.fail(reqs["nr_a"])  # the scope waits for nr_d, scheduled
    h.send(not_started(reqs["nr_d"], "w1", PAUSED_REASON, paused=True))  # taken during the pause
    h.pump()
    # the bug: nr_d went back to PENDING, not started, and nothing took the scope's next step
    assert sorted((r.task, r.attempt) for r in h.requests()) == [("nr_a", 2), ("nr_d", 2)]


def test_no_task_of_a_scope_over_an_empty_list_starts() -> None:
    h = Harness()
    inner = flow.unordered("sc", nr_a, nr_d, retry=ParameterizedForEach(rebind="candidates"))
    rid = h.client.submit(flow.linear("top", inner).compile(reg), {"candidates": []})
    h.pump()
    assert h.requests() == []  # the bug: the second root was sent in the failed run
    assert h.client.status(rid).status == states.FAILED
