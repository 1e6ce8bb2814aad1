"""Completions that arrive before a lazy task's defer() is recorded (the token exists while
its body runs): accepted as the attempt's result, applied once, fenced to their attempt."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from runner import flow, protocol, task
from runner.client import Client
from runner.config import Config
from runner.define.retry import Retry
from runner.define.tasks import Registry
from runner.errors import AlreadyCompleted
from runner.protocol import Event, TaskRequest
from tests.helpers.harness import Harness

reg = Registry()


@task(provides="answer", registry=reg, retry=Retry(attempts=2, delay=0))
def ask() -> Any:
    return None


@task(provides="done", registry=reg)
def after(answer: str) -> str:
    return answer


FLOW = flow.linear("ask_flow", ask, after).compile(reg)


def complete(req: TaskRequest, attempt: int, **body: Any) -> Event:
    return Event(
        protocol.TASK_COMPLETE,
        f"complete:{req.run_id}:{req.task}:{attempt}:{uuid.uuid4().hex}",
        req.run_id,
        req.task,
        attempt,
        {"by": "outside", **body},
        protocol.now_ms(),
    )


def waiting(req: TaskRequest) -> Event:
    return Event(
        protocol.TASK_WAITING,
        protocol.waiting_id(req.run_id, req.task, req.attempt),
        req.run_id,
        req.task,
        req.attempt,
        {"worker": "w"},
        protocol.now_ms(),
    )


def test_a_completion_before_defer_is_the_result_once() -> None:
    h = Harness()
    client = Client(Config(secret="s"), h.store, h.hub.connect)
    rid = h.client.submit(FLOW, {})
    h.pump()
    [req] = h.requests()  # the body runs (SCHEDULED to the engine: no started event yet)
    token = client.token_for(rid, "ask")
    assert client.complete(token, "yes", wait_s=None) == "accepted"
    h.pump()
    [nxt] = h.requests()
    assert (nxt.task, nxt.args) == ("after", {"answer": "yes"})
    ev = complete(req, 1, values={"answer": "again"})
    h.send(ev)
    h.send(ev)  # redelivered
    h.send(waiting(req))  # the body's own defer() arrives last
    h.pump()
    assert h.requests() == []
    h.ok(nxt, done="yes")
    info = h.client.status(rid)
    assert info.status == "SUCCESS" and info.result == {"done": "yes"}
    hist = h.client.history(rid)
    assert [(e.old, e.new) for e in hist if e.scope == "ask" and e.old != e.new] == [
        ("PENDING", "SCHEDULED"),
        ("SCHEDULED", "RUNNING"),
        ("RUNNING", "SUCCESS"),
    ]
    notes = [e.extra.get("note", "") for e in hist if e.scope == "ask" and e.old == e.new]
    assert notes == ["ignored: task is already SUCCESS", "ignored: task is already SUCCESS"]
    with pytest.raises(AlreadyCompleted):
        client.complete(token, "late")


def test_a_completion_of_an_earlier_attempt_never_completes_the_next() -> None:
    h = Harness()
    rid = h.client.submit(FLOW, {})
    h.pump()
    [req] = h.requests()
    h.fail(req)  # attempt 1 fails: attempt 2 is scheduled
    [again] = h.requests()
    assert again.attempt == 2
    h.send(complete(req, 1, values={"answer": "stale"}))
    h.pump()
    assert h.status(rid) == ("RUNNING", {"after": "PENDING", "ask": "SCHEDULED"})
    notes = [e.extra.get("note", "") for e in h.client.history(rid)]
    assert any("fenced: attempt 1" in n for n in notes)
    h.send(complete(again, 2, values={"answer": "fresh"}))
    h.pump()
    [nxt] = h.requests()
    assert nxt.args == {"answer": "fresh"}


def test_a_redelivered_defer_is_a_duplicate_not_an_engine_error() -> None:
    """An engine applied a task's defer() and died before acknowledging it: the redelivery
    finds the task WAITING already. It is recorded as a duplicate — not decided again (that
    raised an illegal WAITING -> WAITING transition and dead-lettered the event). Found by the
    simulator (seed 6 of tests/sim, a lost store reply after the commit)."""
    h = Harness()
    rid = h.client.submit(FLOW, {})
    h.pump()
    [req] = h.requests()
    h.send(waiting(req))
    h.pump()
    h.send(waiting(req))  # the same event again
    h.pump()
    assert h.dead_letters() == []
    assert h.status(rid) == ("RUNNING", {"ask": "WAITING", "after": "PENDING"})
    token = Client(Config(secret="s"), h.store, h.hub.connect).token_for(rid, "ask")
    assert (
        Client(Config(secret="s"), h.store, h.hub.connect).complete(token, "yes", wait_s=None) == "accepted"
    )
    h.pump()
    assert [r.task for r in h.requests()] == ["after"]


def test_a_lease_timer_that_fires_after_the_task_deferred_is_ignored() -> None:
    """A long lazy task is leased, then defers: WAITING holds no lease, and the defer cancels
    the lease timer — but an engine may have claimed it just before (its event is on its
    way). That late timer must not fail the waiting attempt as if its worker had died (it
    did: LeaseExpired, the body ran again as attempt 2). Found by the simulator (seed 5743
    of tests/sim: a slow worker's lazy task)."""
    h = Harness()
    rid = h.client.submit(FLOW, {})
    h.pump()
    [req] = h.requests()
    h.send(h.event(protocol.TASK_LEASED, req, protocol.leased_id(rid, "ask", 1) + ":0"))
    h.pump()
    [timer] = [t for t in h.timers(rid) if t.body["purpose"] == protocol.TIMER_LEASE]
    h.send(waiting(req))
    h.pump()
    assert h.timers(rid) == []  # the defer cancelled it
    h.send(timer)  # claimed before the cancel: it fires anyway
    h.pump()
    assert h.status(rid) == ("RUNNING", {"ask": "WAITING", "after": "PENDING"})
    assert h.requests() == []  # not sent again
    assert h.dead_letters() == []
