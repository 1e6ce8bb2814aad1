"""A request queued before its run was paused comes back unstarted from the worker (issue
16, item 3): the engine holds the task for the resume, as its next attempt at no cost of a
try, and never lets the returned attempt's id be applied twice."""

from __future__ import annotations

from runner import flow, protocol, task
from runner.protocol import TaskRequest
from tests.helpers import flows
from tests.helpers.harness import Harness
from workers.execute import not_started
from workers.skip import PAUSED_REASON, skip_reason


@task(provides="pr_out", retry=2)
def pr_twice(x: int) -> int:
    return x


@task(provides="pr_a")
def pr_root_a(x: int) -> int:
    return x


@task(provides="pr_b")
def pr_root_b(x: int) -> int:
    return x


RETRY_ONCE = flow.linear("pr_retry_once", pr_twice)
TWO_ROOTS = flow.unordered("pr_two_roots", pr_root_a.bind("root_a"), pr_root_b.bind("root_b"))


def returned(h: Harness, req: TaskRequest) -> None:
    h.send(not_started(req, "w1", PAUSED_REASON, paused=True))
    h.pump()


def started(h: Harness, v0: int = 0) -> tuple[str, TaskRequest]:
    rid = h.client.submit(flows.chain(2), {"v0": v0})
    h.pump()
    return rid, h.one()


def test_a_returned_request_is_held_then_sent_again_as_the_next_attempt_on_resume() -> None:
    h = Harness()
    rid, req = started(h)
    h.control(rid, protocol.RUN_PAUSE)
    returned(h, req)
    assert h.requests() == []
    assert h.status(rid) == ("PAUSED", {"s1": "PENDING", "s2": "PENDING"})
    h.control(rid, protocol.RUN_RESUME)
    again = h.one()
    assert (again.task, again.attempt) == ("s1", req.attempt + 1)
    h.ok(again, v1=1)
    h.ok(h.one(), v2=2)
    info = h.client.status(rid)
    assert info.status == "SUCCESS" and info.result == {"v2": 2}
    notes = [e.extra.get("note", "") for e in h.client.history(rid) if e.scope == "s1"]
    assert any("returned unstarted" in n for n in notes)


def test_a_returned_attempt_costs_no_try_of_the_retry_policy() -> None:
    h = Harness()
    rid = h.client.submit(RETRY_ONCE, {"x": 1})
    h.pump()
    req = h.one()
    h.control(rid, protocol.RUN_PAUSE)
    returned(h, req)
    h.control(rid, protocol.RUN_RESUME)
    h.fail(h.one())  # the one real try fails; its policy allows one retry
    assert h.status(rid)[0] == "RUNNING"


def test_a_report_that_arrives_after_the_resume_sends_the_request_again_at_once() -> None:
    h = Harness()
    rid, req = started(h)
    h.control(rid, protocol.RUN_PAUSE)
    h.control(rid, protocol.RUN_RESUME)
    returned(h, req)
    again = h.one()
    assert (again.task, again.attempt) == ("s1", req.attempt + 1)


def test_a_result_of_the_returned_attempt_from_another_delivery_is_not_applied() -> None:
    h = Harness()
    rid, req = started(h)
    h.control(rid, protocol.RUN_PAUSE)
    returned(h, req)
    h.ok(req, v1=99)  # a redelivery ran the body after all: the report took its result id
    assert h.status(rid) == ("PAUSED", {"s1": "PENDING", "s2": "PENDING"})
    h.control(rid, protocol.RUN_RESUME)
    h.ok(h.one(), v1=1)
    h.ok(h.one(), v2=2)
    assert h.client.status(rid).result == {"v2": 2}


def test_a_retry_of_a_run_that_failed_while_paused_sends_a_returned_root_again() -> None:
    h = Harness()
    rid = h.client.submit(TWO_ROOTS, {"x": 1})
    h.pump()
    reqs = h.by_task()
    h.control(rid, protocol.RUN_PAUSE)
    returned(h, reqs["root_a"])
    h.fail(reqs["root_b"])  # the running one fails: the run fails while paused
    assert h.status(rid)[0] == "FAILED"
    h.control(rid, protocol.RUN_RETRY)
    sent = h.by_task()
    assert (sent["root_a"].attempt, sent["root_b"].attempt) == (2, 2)


def test_the_worker_returns_only_a_first_delivery_of_a_scheduled_request() -> None:
    h = Harness()
    rid, req = started(h)
    raw = h.store.read(rid, {"tasks": ["s1"]})["tasks"][0]
    assert skip_reason(req, 0, b"PAUSED", raw) == (PAUSED_REASON, True)
    assert skip_reason(req, 1, b"PAUSED", raw) == ("", False)  # an earlier delivery may have started it
    assert skip_reason(req, 0, b"RUNNING", raw) == ("", False)
