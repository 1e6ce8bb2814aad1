"""Child runs (issue 16, item 5): a task returns `start_child(flow, inputs)`; the engine starts
the child in the parent's commit, the parent's task waits holding nothing, and the child's
outcome is the task's — exactly once under repeated reports, cancelled with its parent."""

from __future__ import annotations

from typing import Any

import pytest

from runner import ChildRun, flow, protocol, start_child, task
from runner.define.child import child_run_id
from runner.define.tasks import REGISTRY
from runner.protocol import Event, TaskRequest
from runner.store import keys
from tests.helpers.harness import CFG, Harness
from workers.execute import execute


@task(provides="doubled")
def cr_double(n: int) -> int:
    return n * 2


@task(provides="invoice", retry=2)
def cr_bill(x: int) -> ChildRun:
    return start_child(CHILD, {"n": x})


@task(provides="shipped")
def cr_ship(invoice: dict[str, Any]) -> str:
    return f"shipped {invoice}"


@task(provides="invoice", timeout=30)
def cr_bill_with_deadline(x: int) -> ChildRun:
    return start_child(CHILD, {"n": x})


@task(provides="invoice")
def cr_bill_badly(x: int) -> ChildRun:
    return start_child(CHILD, {"m": x})


CHILD = flow.linear("cr_child", cr_double)
PARENT = flow.linear("cr_parent", cr_bill, cr_ship)


def run_worker(h: Harness, req: TaskRequest) -> Event:
    """What a worker reports for ``req`` (the real execute), sent to the engine."""
    event = execute(req, REGISTRY, "w1", CFG.max_payload_bytes)
    h.send(event)
    h.pump()
    return event


def started(h: Harness, x: int = 5, parent: Any = PARENT) -> tuple[str, TaskRequest, str]:
    rid = h.client.submit(parent, {"x": x})
    h.pump()
    req = h.one()
    run_worker(h, req)
    return rid, req, child_run_id(rid, req.task, req.attempt)


def test_the_childs_result_is_the_tasks_result_and_the_parent_goes_on() -> None:
    h = Harness()
    rid, bill, child = started(h)
    assert h.status(rid) == ("RUNNING", {"cr_bill": "WAITING", "cr_ship": "PENDING"})
    info = h.client.status(child)
    assert info.status == "RUNNING" and info.flow == "cr_child"
    [double] = h.requests()
    assert (double.run_id, double.task, double.args) == (child, "cr_double", {"n": 5})
    h.ok(double, doubled=10)
    assert h.client.status(child).status == "SUCCESS"
    ship = h.one()
    assert (ship.run_id, ship.args) == (rid, {"invoice": {"doubled": 10}})
    h.ok(ship, shipped="ok")
    assert h.client.status(rid).status == "SUCCESS"
    notes = [e.extra.get("note", "") for e in h.client.history(rid) if e.scope == "cr_bill"]
    assert f"waiting for its child run {child}" in notes and f"child run {child} succeeded" in notes
    assert f"child of run {rid}" in h.client.history(child)[0].extra["note"]


def test_a_repeated_report_starts_no_second_child() -> None:
    h = Harness()
    rid, bill, child = started(h)
    run_worker(h, bill)  # the request was redelivered and ran again: the same report
    [double] = h.requests()  # one child, one request
    assert double.run_id == child
    assert [e.new for e in h.client.history(child) if e.scope == "run"] == ["RUNNING"]


def test_a_failed_child_fails_the_attempt_and_the_retry_starts_a_new_child() -> None:
    h = Harness()
    rid, bill, child = started(h)
    h.fail(h.one(), "ValueError")  # the child's only task fails: the child run FAILED
    assert h.client.status(child).status == "FAILED"
    st = h.client.status(rid).tasks["cr_bill"]
    assert st.status == "FAILED" and st.error is not None and st.error["type"] == "ChildRunFailed"
    assert f"child run {child} ended FAILED: ValueError" in st.error["message"]
    for timer in h.timers(rid):  # the retry's backoff
        h.send(timer)
    h.pump()
    again = h.one()
    assert (again.task, again.attempt) == ("cr_bill", 2)
    run_worker(h, again)
    second = child_run_id(rid, "cr_bill", 2)
    assert second != child and h.one().run_id == second


def test_cancelling_the_parent_cancels_its_waiting_child() -> None:
    h = Harness()
    rid, bill, child = started(h)
    h.control(rid, protocol.RUN_CANCEL)
    h.pump()
    assert h.client.status(child).status == "CANCELLED"
    assert h.client.status(rid).status == "CANCELLED"
    assert h.requests()[0].run_id == child  # its request was queued; a worker skips it


def test_a_parent_that_stops_waiting_cancels_the_child() -> None:
    h = Harness()
    rid, bill, child = started(h, parent=flow.linear("cr_deadline", cr_bill_with_deadline))
    [wait_limit] = [t for t in h.timers(rid) if t.body["purpose"] == protocol.TIMER_TIMEOUT]
    h.send(wait_limit)
    h.pump()
    assert h.client.status(rid).tasks["cr_bill_with_deadline"].error["type"] == "TaskTimeout"  # type: ignore[index]
    assert h.client.status(child).status == "CANCELLED"


def test_a_child_with_wrong_inputs_fails_the_attempt_in_the_worker() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("cr_bad", cr_bill_badly), {"x": 1})
    h.pump()
    event = run_worker(h, h.one())
    assert event.kind == protocol.TASK_FAILED and event.body["error"]["type"] == "UnknownInputError"
    assert h.client.status(rid).status == "FAILED"


def test_a_malformed_child_from_a_worker_fails_the_attempt_not_the_engine() -> None:
    h = Harness()
    rid = h.client.submit(PARENT, {"x": 1})
    h.pump()
    req = h.one()
    body = {"worker": "w", "child": {"spec": {"name": 3}, "inputs": []}}
    h.send(
        h.event(protocol.TASK_WAITING, req, protocol.waiting_id(req.run_id, req.task, req.attempt), **body)
    )
    h.pump()
    st = h.client.status(rid).tasks["cr_bill"]
    assert st.status == "FAILED" and st.error is not None and st.error["type"] == "InvalidChildRun"


@pytest.mark.parametrize(
    ("parent", "task_name", "attempt"),
    [("r1", "bill", 1), ("r1", "each[0]", 2), ("r1", "each_0_", 2), ("x" * 120, "t" * 60, 3)],
)
def test_child_run_ids_are_valid_and_stable(parent: str, task_name: str, attempt: int) -> None:
    cid = child_run_id(parent, task_name, attempt)
    assert keys.check_run_id(cid) == cid
    assert cid == child_run_id(parent, task_name, attempt)
    assert cid != child_run_id(parent, task_name, attempt + 1)


def test_map_element_names_do_not_share_a_child_with_a_lookalike_task() -> None:
    assert child_run_id("r", "each[0]", 1) != child_run_id("r", "each_0_", 1)
