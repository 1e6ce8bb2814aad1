"""A long revert handler is leased like a long task body (G6), and a lost lease sends it again.

Found by the simulator (seed 21007, ``long_task@28:W1=8000,long_task@53:W0=30000,crash@96:W0=19``):
a revert handler ran past ``ack_after_s`` on a slow worker, which published ``task.leased``
and acknowledged the revert request. The engine ignored that lease (the task was REVERTING,
not running), so no lease timer covered the revert; the worker then crashed, the request was
gone from the broker, and the run stayed REVERTING for ever.

Driven event by event on the in-memory store and transport (`Harness`), with the lease event
built by the worker's own `leased_event`, so the interleaving is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runner import flow, protocol, states, task
from runner.broker import Delivery
from runner.define.context import TaskContext
from runner.define.tasks import Registry
from runner.protocol import Event, TaskRequest
from runner.store import keys
from runner.store.base import DueTimer
from tests.helpers.harness import CFG, Harness
from workers.leases import Running, leased_event

reg = Registry()


@task(provides="s", registry=reg)
def src() -> int:
    return 1


@src.revert
def src_undo() -> None:
    return None


@task(provides="bad_out", registry=reg)
def bad(s: int) -> int:
    raise ValueError("bad breaks")


FLOW = flow.linear("revlease", src, bad).compile(reg)
NOW = [1_800_000_000.0]  # the wall clock every transition reads, in seconds: moved by the tests


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    before = protocol.set_wall_clock(lambda: NOW[0])
    yield
    protocol.set_wall_clock(before)


def _reverting(h: Harness) -> tuple[str, TaskRequest]:
    """``src`` done, ``bad`` failed for good: the run REVERTING, src's revert request sent."""
    rid = h.client.submit(FLOW, {})
    h.pump()
    h.ok(h.one(), s=1)
    h.fail(h.one())
    undo = h.one()
    assert (undo.task, undo.mode) == ("src", protocol.MODE_REVERT)
    return rid, undo


def _worker_leases(h: Harness, req: TaskRequest, delivery_count: int = 0) -> int:
    """The worker's loop leases the long revert (its own event), as it does before it
    acknowledges the request; returns the lease's end."""
    d = Delivery(b"", "task.default", "application/x-msgpack", req.id, delivery_count > 0, delivery_count, {})
    running = Running(d, req, TaskContext(req.run_id, req.task, req.attempt))
    out = leased_event(running, "w")
    ev = protocol.decode(out.body)
    assert isinstance(ev, Event)
    h.send(ev)
    h.pump()
    raw = h.store.read(req.run_id, {keys.LEASES: [req.task]})[keys.LEASES][0]
    assert raw is not None, "the revert's lease was not taken"
    attempt, _, until = raw.decode().partition(":")
    assert int(attempt) == req.attempt
    return int(until)


def _lease_timer(h: Harness, req: TaskRequest, until: int, at_ms: int) -> None:
    """The lease timer fires, as an engine fires it: published, then taken off the store."""
    tid = protocol.timer_id(protocol.TIMER_LEASE, req.run_id, req.task, req.attempt, str(until))
    assert tid in _lease_timers(h, req.run_id)
    body: dict[str, Any] = {"purpose": protocol.TIMER_LEASE}
    ev = Event(protocol.TIMER_FIRED, tid, req.run_id, req.task, req.attempt, body, at_ms)
    NOW[0] = max(NOW[0], at_ms / 1000)  # the engine applies it when it is due
    h.send(ev)
    h.store.remove_timers([DueTimer(req.run_id, tid, protocol.encode(ev))])
    h.pump()


def _lease_timers(h: Harness, rid: str) -> list[str]:
    return [e.id for e in h.timers(rid) if e.body["purpose"] == protocol.TIMER_LEASE]


def test_a_leased_revert_whose_worker_died_is_sent_again_and_the_run_ends_reverted() -> None:
    h = Harness()
    rid, undo = _reverting(h)
    until = _worker_leases(h, undo)
    assert _lease_timers(h, rid), "no lease timer covers the leased revert"
    # The worker dies: no heartbeat renews the lease, and the request was acknowledged.
    _lease_timer(h, undo, until, until + 1)
    again = h.one()  # the bug: nothing, and the run stayed REVERTING for ever
    assert (again.task, again.mode, again.attempt) == ("src", protocol.MODE_REVERT, undo.attempt)
    assert again.id != undo.id  # a new message, not taken for a duplicate of the first
    until2 = _worker_leases(h, again)  # the second worker's lease is new, not a duplicate
    assert until2 > until
    h.reverted(again)
    assert h.status(rid) == ("REVERTED", {"bad": "FAILED", "src": "REVERTED"})
    assert _lease_timers(h, rid) == []  # the revert's lease timer went with it
    assert h.store.read(rid, {keys.LEASES: ["src"]})[keys.LEASES][0] is None


def test_a_revert_lease_renewed_by_heartbeats_keeps_the_revert() -> None:
    h = Harness()
    rid, undo = _reverting(h)
    until = _worker_leases(h, undo)
    assert h.store.heartbeat(rid, "src", undo.attempt, until + 60_000, None).leased
    _lease_timer(h, undo, until, until + 1)
    assert h.requests() == []  # the worker is alive: no second revert
    assert h.status(rid)[1]["src"] == states.REVERTING
    h.reverted(undo)
    assert h.status(rid)[0] == states.REVERTED
    assert _lease_timers(h, rid) == []


def test_a_revert_that_keeps_losing_its_lease_fails_the_run_after_the_delivery_limit() -> None:
    h = Harness()
    rid, req = _reverting(h)
    for _ in range(CFG.delivery_limit - 1):
        until = _worker_leases(h, req)
        _lease_timer(h, req, until, until + 1)
        req = h.one()
    until = _worker_leases(h, req)
    _lease_timer(h, req, until, until + 1)
    assert h.requests() == []
    info = h.client.status(rid)
    assert info.status == states.FAILED
    assert info.error is not None and info.error["type"] == "RevertFailed"
    assert "lease expired" in info.error["message"]
    assert _lease_timers(h, rid) == []


def test_a_late_lease_of_the_body_does_not_lease_the_revert() -> None:
    """The body's ``task.leased`` (same attempt) arriving while the task is REVERTING is the
    body's, not the revert's: ignored, so no lease timer would send the revert again."""
    h = Harness()
    rid, undo = _reverting(h)
    lid = protocol.leased_id(rid, "src", undo.attempt) + ":0"
    h.send(h.event(protocol.TASK_LEASED, undo, lid))
    h.pump()
    assert _lease_timers(h, rid) == []
    assert h.store.read(rid, {keys.LEASES: ["src"]})[keys.LEASES][0] is None
