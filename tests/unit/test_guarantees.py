"""Guarantees stated as tests, each once untested (the test audit's surviving mutations and
`make mutants`): timeouts under default settings, engine-side poison, results checked against
`provides`, retry accounting under lost leases, joins that fire once, no timer left behind,
events applied once even when their commit sends nothing. The engine harness drives each one
deterministically: in-memory store, local broker, no threads, no sleeps."""

from __future__ import annotations

import uuid
from typing import Any

from runner import flow, protocol, task
from runner.broker import DEAD_QUEUE, ENGINE_QUEUE, task_queue
from runner.config import Config
from runner.define.retry import Retry
from runner.define.tasks import Registry
from runner.engine import Engine
from runner.protocol import Event, TaskRequest
from runner.store import keys
from tests.helpers.harness import CFG, Harness
from workers.loop import Worker
from workers.skip import skip_reason

reg = Registry()


H = Harness  # the engine harness, with its dead-letter queue and shorthands


# --- timeouts: armed when the task starts, whatever ack_after_s is ---------------------------


@task(provides="x", registry=reg, timeout=0.3)
def bounded() -> int:
    return 1


def test_a_started_task_times_out_after_its_timeout_with_default_settings() -> None:
    """Default settings (a long task is leased only after ack_after_s = 5 s): the timeout
    counts from the start, not from a lease. A task that started 10 s ago with a 0.3 s
    timeout is failed with TaskTimeout as soon as the engine looks."""
    assert Config().ack_after_s > 0.3 and CFG.ack_after_s == Config().ack_after_s
    h = H()
    rid = h.client.submit(flow.linear("timed", bounded).compile(reg), {})
    h.pump()
    req = h.one()
    started_at = protocol.now_ms() - 10_000
    sid = protocol.started_id(req.run_id, req.task, req.attempt)
    h.send(h.event(protocol.TASK_STARTED, req, sid, at_ms=started_at, delivery=0))
    h.pump()
    info = h.client.status(rid)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "TaskTimeout"


def test_starting_a_task_arms_its_timeout_due_at_start_plus_timeout() -> None:
    h = H()
    rid = h.client.submit(flow.linear("timed", bounded).compile(reg), {})
    h.pump()
    req = h.one()
    at = protocol.now_ms()
    h.send(h.event(protocol.TASK_STARTED, req, protocol.started_id(rid, req.task, 1), at_ms=at, delivery=0))
    h.pump()
    [timer] = h.timers(rid)
    assert (timer.body["purpose"], timer.task, timer.attempt, timer.at_ms) == (
        protocol.TIMER_TIMEOUT,
        "bounded",
        1,
        at + 300,
    )


def test_an_attempt_that_ended_leaves_no_timer_behind() -> None:
    h = H()
    rid = h.client.submit(flow.linear("timed", bounded).compile(reg), {})
    h.pump()
    req = h.one()
    h.send(h.event(protocol.TASK_STARTED, req, protocol.started_id(rid, req.task, 1), delivery=0))
    h.pump()
    assert len(h.timers(rid)) == 1
    h.ok(req, x=1)
    assert h.status(rid)[0] == "SUCCESS"
    assert h.timers(rid) == []
    assert h.store._timers == {}  # nor in the due index


# --- engine poison (G5) ----------------------------------------------------------------------


class EngineDied(BaseException):
    """Not an `Exception`: the engine does not catch it; its process would be gone."""


@task(provides="x", registry=reg)
def plain() -> int:
    return 1


@task(provides="y", registry=reg)
def after(x: int) -> int:
    return x


def test_an_event_that_keeps_killing_engines_is_dead_lettered_as_poison() -> None:
    h = H()
    rid = h.client.submit(flow.linear("victim", plain, after).compile(reg), {})
    h.pump()
    req = h.one()
    poison = h.result(req, x=1)
    h.send(poison)
    deaths = 0
    for _ in range(CFG.delivery_limit + 2):  # bounded: a new engine each time one dies
        engine = Engine(CFG, h.store, h.hub.connect())
        engine.start()
        real = engine.reader.decide

        def dies(event: Event, redelivered: bool = False, real: Any = real) -> Any:
            if event.id == poison.id:
                raise EngineDied
            return real(event, redelivered)

        engine.reader.decide = dies  # type: ignore[method-assign]
        try:
            engine.run_once(0)
        except EngineDied:
            deaths += 1
        engine.broker.close()  # the engine is gone: the broker hands its event back
        if h.hub.depth(DEAD_QUEUE):
            break
    [dead] = h.dead_letters()
    assert dead.message_id == poison.id
    assert "poison" in dead.headers["x-ackflow-reason"]
    assert deaths <= CFG.delivery_limit
    assert h.hub.depth(ENGINE_QUEUE) == 0
    # The run is not wedged: a later, healthy event of it applies.
    again = Event(protocol.TASK_COMPLETE, f"complete:{uuid.uuid4().hex}", rid, "plain", 1, {"by": "t"}, 1)
    again.body["values"] = {"x": 7}
    h.send(again)
    h.pump()
    [nxt] = h.requests()
    assert (nxt.task, nxt.args) == ("after", {"x": 7})


# --- results are checked against provides ------------------------------------------------------


def test_a_result_whose_names_differ_from_provides_fails_the_attempt_and_stores_nothing() -> None:
    for values in ({"wrong": 1}, {"x": 1, "extra": 2}, {}):
        h = H()
        rid = h.client.submit(flow.linear("named", plain, after).compile(reg), {})
        h.pump()
        h.ok(h.one(), **values)
        info = h.client.status(rid)
        assert info.status == "FAILED", values
        assert info.error is not None and info.error["type"] == "ProtocolError"
        assert h.store.read_all(rid, keys.DATA) == {}
        assert h.requests() == []  # `after` never started on a wrong result


# --- retry accounting: a lost lease costs no try -----------------------------------------------


@task(provides="x", registry=reg, retry=Retry(attempts=2, delay=0))
def flaky() -> int:
    return 1


def _lease(h: H, req: TaskRequest) -> int:
    """The worker announces the start, then takes the lease (ack_after_s passed)."""
    sid = protocol.started_id(req.run_id, req.task, req.attempt)
    h.send(h.event(protocol.TASK_STARTED, req, sid, delivery=0))
    lid = protocol.leased_id(req.run_id, req.task, req.attempt) + ":0"
    h.send(h.event(protocol.TASK_LEASED, req, lid))
    h.pump()
    raw = h.store.read(req.run_id, {keys.LEASES: [req.task]})[keys.LEASES][0]
    assert raw is not None
    attempt, _, until = raw.decode().partition(":")
    assert int(attempt) == req.attempt
    return int(until)


def _lease_timer(h: H, req: TaskRequest, until: int, at_ms: int) -> None:
    tid = protocol.timer_id(protocol.TIMER_LEASE, req.run_id, req.task, req.attempt, str(until))
    h.send(Event(protocol.TIMER_FIRED, tid, req.run_id, req.task, req.attempt, {"purpose": "lease"}, at_ms))
    h.pump()


def test_a_redispatch_after_a_lost_lease_is_not_a_try_of_the_retry_policy() -> None:
    """attempts=2: the first attempt's worker vanished (its lease expired), the second
    attempt fails: that is the first real try, so a third attempt runs."""
    h = H()
    rid = h.client.submit(flow.linear("leasy", flaky).compile(reg), {})
    h.pump()
    req1 = h.one()
    until = _lease(h, req1)
    _lease_timer(h, req1, until, until + 1)  # no heartbeat renewed it: expired
    req2 = h.one()
    assert req2.attempt == 2
    h.fail(req2)
    req3 = h.one()
    assert req3.attempt == 3
    h.ok(req3, x=1)
    assert h.status(rid)[0] == "SUCCESS"


def test_a_lease_renewed_by_heartbeats_keeps_the_attempt_when_its_first_term_ends() -> None:
    h = H()
    rid = h.client.submit(flow.linear("leasy", flaky).compile(reg), {})
    h.pump()
    req = h.one()
    until = _lease(h, req)
    assert h.store.heartbeat(rid, req.task, 1, until + 60_000, None).leased
    _lease_timer(h, req, until, until + 1)
    assert h.requests() == []  # no new attempt: the worker is alive
    assert h.status(rid)[1]["flaky"] == "RUNNING"
    h.ok(req, x=1)
    assert h.status(rid)[0] == "SUCCESS"


# --- joins fire once ---------------------------------------------------------------------------


@task(provides="p1", registry=reg)
def j1() -> int:
    return 1


@task(provides="p2", registry=reg)
def j2() -> int:
    return 2


@task(provides="p3", registry=reg)
def j3() -> int:
    return 3


@task(provides="joined", registry=reg)
def gather(p1: int | None = None, p2: int | None = None, p3: int | None = None) -> int:
    return 0


def test_a_join_of_n_fires_once_however_many_predecessors_follow() -> None:
    for join in ("any", 2):
        h = H()
        fl = flow.graph(
            "joinn", j1, j2, j3, gather.bind(join=join), edges=[(p, "gather") for p in ("j1", "j2", "j3")]
        )
        rid = h.client.submit(fl.compile(reg), {})
        h.pump()
        reqs = {r.task: r for r in h.requests()}
        started = []
        for name, value in (("j1", {"p1": 1}), ("j2", {"p2": 2}), ("j3", {"p3": 3})):
            h.ok(reqs[name], **value)
            started += h.requests()
        [g] = started
        assert g.task == "gather", join
        h.ok(g, joined=5)
        assert h.status(rid)[0] == "SUCCESS"
        assert h.dead_letters() == []


@task(provides="l", registry=reg)
def left(x: int) -> int:
    return x


@task(provides="r", registry=reg)
def right(x: int) -> int:
    return x


@task(provides="out", registry=reg)
def bottom(l: int, r: int) -> int:  # noqa: E741 - the data name
    return l + r


def test_two_decisions_read_before_either_commits_cannot_both_count_a_join() -> None:
    """Two engines each apply one predecessor's success of the same join, from the same
    read: one of the two commits must be refused (and decided again), or a count is lost."""
    h = H()
    fl = flow.linear("diamond", plain, flow.unordered("mid", left, right), bottom)
    rid = h.client.submit(fl.compile(reg), {})
    h.pump()
    h.ok(h.one(), x=1)
    reqs = {r.task: r for r in h.requests()}
    ev_l, ev_r = h.result(reqs["left"], l=1), h.result(reqs["right"], r=2)
    c_l, c_r = h.engine.reader.decide(ev_l), h.engine.reader.decide(ev_r)
    assert c_l is not None and c_r is not None
    assert h.store.commit(c_l).applied
    assert h.store.commit(c_r).outcome == "conflict"
    h.send(ev_r)  # decided again, on a fresh read
    h.pump()
    [b] = h.requests()
    assert b.task == "bottom" and b.args == {"l": 1, "r": 2}
    h.ok(b, out=3)
    assert h.client.status(rid).result == {"out": 3}


# --- an event applies once, even when its commit sends nothing -----------------------------------


@task(provides="x", registry=reg, retry=Retry(attempts=3, delay=60))
def later() -> int:
    return 1


def test_an_event_whose_commit_sent_nothing_is_applied_once_when_redelivered() -> None:
    """A failure with a retry in 60 s commits a state and a timer, and no message. Its
    redelivery must be recognised as applied, not decided again: every history entry of
    the event comes from one commit."""
    h = H()
    rid = h.client.submit(flow.linear("once", later).compile(reg), {})
    h.pump()
    req = h.one()
    h.fail(req)
    before = h.client.history(rid)
    h.fail(req)  # the same event id again (a redelivery)
    assert h.client.history(rid) == before


# --- a worker never starts the request of a cancelled run -------------------------------------


def test_a_worker_skips_the_request_of_a_cancelled_run_and_reports_nothing() -> None:
    req = TaskRequest("req:r:t:1", "r", "t", "fn", 1, {}, ["x"], False, 1)
    reason, report = skip_reason(req, 0, b"CANCELLED", None)
    assert reason and not report
    assert skip_reason(req, 0, b"RUNNING", None) == ("", False)


# --- a map runs at most `limit` elements at once -----------------------------------------------


@task(provides="ids", registry=reg)
def ids() -> list[int]:
    return [1, 2, 3, 4, 5]


@task(provides="sq", registry=reg)
def sq(n: int) -> int:
    return n * n


def test_a_map_never_runs_more_than_its_limit_at_once() -> None:
    h = H()
    rid = h.client.submit(
        flow.linear("lim", ids, flow.map(sq, over="ids", provides="sqs", limit=2)).compile(reg), {}
    )
    h.pump()
    h.ok(h.one(), ids=[1, 2, 3, 4, 5])
    running = h.requests()
    seen = len(running)
    while running:
        assert len(running) <= 2
        r = running.pop(0)
        h.ok(r, **{r.task: r.args["n"] ** 2})
        new = h.requests()
        seen += len(new)
        running += new
    assert seen == 5
    assert h.client.status(rid).result == {"sqs": [1, 4, 9, 16, 25]}


# --- a retry timer starts only the attempt it was set for ---------------------------------------


def _retry_timer(h: H, req: TaskRequest, attempt: int) -> None:
    tid = protocol.timer_id(protocol.TIMER_RETRY, req.run_id, req.task, attempt)
    h.send(Event(protocol.TIMER_FIRED, tid, req.run_id, req.task, attempt, {"purpose": "retry"}, 1))
    h.pump()


def test_a_retry_timer_for_an_attempt_that_is_not_next_starts_nothing() -> None:
    h = H()
    rid = h.client.submit(flow.linear("retried", later).compile(reg), {})
    h.pump()
    req = h.one()
    h.fail(req)  # attempt 2 is due in 60 s
    _retry_timer(h, req, 3)  # a timer of another attempt (stale, or forged)
    assert h.requests() == []
    assert h.status(rid)[1]["later"] == "FAILED"
    _retry_timer(h, req, 2)
    assert [(r.task, r.attempt) for r in h.requests()] == [("later", 2)]


# --- worker poison (G5): a request that keeps killing workers is not run again ------------------

ran: list[int] = []


@task(provides="x", registry=reg)
def deadly() -> int:
    ran.append(1)
    return 1


def test_a_request_that_keeps_killing_workers_is_dead_lettered_and_its_attempt_failed() -> None:
    h = H()
    h.tasks.close()
    ran.clear()
    rid = h.client.submit(flow.linear("poisoned", deadly).compile(reg), {})
    h.pump()
    for _ in range(CFG.delivery_limit - 1):  # a worker takes the request, and dies with it
        victim = h.hub.connect()
        victim.consume([task_queue("default")], 1)
        assert len(victim.poll(0)) == 1
        victim.close()
    w = Worker(CFG, h.hub.connect(), reg, concurrency=1, name="w1")
    w.start()
    try:
        w.run_once(0)
        h.pump()
    finally:
        w._pool.shutdown()
    assert ran == []  # not run a fifth time
    [dead] = h.dead_letters()
    assert "poison" in dead.headers["x-ackflow-reason"]
    info = h.client.status(rid)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "PoisonMessage"
