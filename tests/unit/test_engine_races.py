"""Two engines deciding events of one run at once: a decision that depends on the run's
status is fenced by it, and a view torn by a commit between two of its reads is read again.

Found by the simulator once another engine could step in the middle of an engine's step
(tests/sim ``preempt``): a result read the run RUNNING and scheduled its successor while
another engine paused the run — the successor started while the run was paused (seed 363);
and a resume read the run's held tasks, then (in a second round trip) a held task that the
other engine's resume had scheduled meanwhile, and raised an illegal SCHEDULED -> SCHEDULED
transition: the event was dead-lettered (seed 1695); a task's success read the run RUNNING
while another engine failed the run (REVERTING, waiting for that task): the success took no
compensation step and the run stayed REVERTING for ever (seed 20445 of ``make sim``); a
retry read a pending task's join before another engine counted a predecessor that had just
succeeded in the failed run: the task was never started and the retried run stayed RUNNING
(seed 23368); compensation stalled when a revert's end and a skipped successor's report
were decided at once, each reading the other's task as it was (seed 32644); a cancel read a
task waiting to retry while another engine's retry timer scheduled it: the cancel left it
scheduled (seed 61882); a retry read a task running while another engine failed it: the
retry did not restart it and the retried run stayed RUNNING for ever (seed 71543).

Driven on the in-memory store and transport, with a store that lets the second engine run
at an exact point of the first one's step.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from runner import flow, protocol, task
from runner.broker import ENGINE_QUEUE, Outgoing, task_queue
from runner.broker.base import DEAD_QUEUE
from runner.broker.local import LocalHub
from runner.client import Client
from runner.define.retry import Retry
from runner.define.tasks import Registry
from runner.engine import Engine
from runner.protocol import Event, TaskRequest
from runner.store import Commit, CommitResult
from runner.store.memory import MemoryStore
from tests.helpers.harness import CFG

reg = Registry()


@task(provides="a", registry=reg)
def first() -> int:
    return 1


@task(provides="b", registry=reg)
def second(a: int) -> int:
    return a


FLOW = flow.linear("two", first, second).compile(reg)


@task(provides="kept", registry=reg)
def keep() -> int:
    return 1


@keep.revert
def unkeep() -> None:
    return None


@task(provides="broken", registry=reg)
def breaks() -> int:
    raise ValueError("no")


BESIDE = flow.unordered("beside", keep, breaks).compile(reg)
RETRIED = flow.unordered("retried", flow.linear("ab", first, second), breaks).compile(reg)


@task(provides="p", registry=reg)
def pre() -> int:
    return 1


@pre.revert
def unpre() -> None:
    return None


@task(provides="s", registry=reg)
def succ(p: int) -> int:
    return p


@task(provides="f", registry=reg, retry=Retry(attempts=3, delay=60))
def flaky() -> int:
    return 1


FLAKY = flow.linear("flaky_flow", flaky).compile(reg)
COMPENSATED = flow.unordered("comp", flow.linear("ps", pre, succ), keep, breaks).compile(reg)


class SteppedStore(MemoryStore):
    """Runs ``before`` once, just before the ``at``-th call of the kind armed."""

    def __init__(self) -> None:
        super().__init__()
        self.kind = ""
        self.at = 0
        self.before: Callable[[], None] | None = None

    def arm(self, kind: str, at: int, before: Callable[[], None]) -> None:
        self.kind, self.at, self.before = kind, at, before

    def _tick(self, kind: str) -> None:
        if self.before is not None and kind == self.kind:
            self.at -= 1
            if self.at == 0:
                fn, self.before = self.before, None
                fn()

    def read(self, run_id: str, wants: Mapping[str, Sequence[str]]) -> dict[str, list[bytes | None]]:
        self._tick("read")
        return super().read(run_id, wants)

    def commit(self, c: Commit) -> CommitResult:
        self._tick("commit")
        return super().commit(c)


class Two:
    def __init__(self) -> None:
        self.hub = LocalHub()
        self.store = SteppedStore()
        self.e1 = Engine(CFG, self.store, self.hub.connect())
        self.e2 = Engine(CFG, self.store, self.hub.connect())
        self.e1.start()
        self.e2.start()
        self.client = Client(CFG, self.store, self.hub.connect)
        self.tasks = self.hub.connect()
        self.tasks.consume([task_queue("default")], 100)
        self.dead = self.hub.connect()
        self.dead.consume([DEAD_QUEUE], 100)

    def send(self, ev: Event) -> None:
        self.hub.connect().publish([Outgoing(ENGINE_QUEUE, ev.id, protocol.encode(ev))])

    def control(self, rid: str, kind: str) -> Event:
        return Event(kind, f"{kind}:{rid}:{uuid.uuid4().hex}", rid, body={"by": "t"}, at_ms=protocol.now_ms())

    def requests(self) -> list[TaskRequest]:
        out = []
        for d in self.tasks.poll(0):
            msg = protocol.decode(d.body)
            assert isinstance(msg, TaskRequest)
            out.append(msg)
            self.tasks.ack(d)
        return out

    def pump(self) -> None:
        while self.e1.run_once(0) or self.e2.run_once(0):
            pass

    def result(self, req: TaskRequest, **values: object) -> Event:
        return Event(
            protocol.TASK_SUCCEEDED,
            protocol.result_id(req.run_id, req.task, req.attempt),
            req.run_id,
            req.task,
            req.attempt,
            {"values": values, "worker": "w"},
            protocol.now_ms(),
        )


def test_a_result_does_not_schedule_its_successor_after_a_concurrent_pause() -> None:
    t = Two()
    rid = t.client.submit(FLOW, {})
    t.pump()
    [req] = t.requests()
    t.send(t.result(req, a=1))
    pause = t.control(rid, protocol.RUN_PAUSE)

    def other_engine_pauses() -> None:
        t.send(pause)
        assert t.e2.run_once(0) == 1

    t.store.arm("commit", 1, other_engine_pauses)  # between e1's read of the run and its commit
    t.e1.run_once(0)
    t.pump()
    info = t.client.status(rid)
    assert info.status == "PAUSED"
    assert info.tasks["second"].status == "PENDING"  # held, not scheduled
    assert t.requests() == []
    t.send(t.control(rid, protocol.RUN_RESUME))
    t.pump()
    assert [r.task for r in t.requests()] == ["second"]


def test_a_view_torn_by_a_concurrent_commit_is_read_again_not_dead_lettered() -> None:
    t = Two()
    rid = t.client.submit(FLOW, {})
    t.pump()
    [req] = t.requests()
    t.send(t.control(rid, protocol.RUN_PAUSE))
    t.pump()
    t.send(t.result(req, a=1))
    t.pump()  # "second" is held by the pause
    assert t.client.status(rid).tasks["second"].status == "PENDING"
    t.send(t.control(rid, protocol.RUN_RESUME))
    other = t.control(rid, protocol.RUN_RESUME)  # a second resume (a double click)

    def other_engine_resumes() -> None:
        t.send(other)
        assert t.e2.run_once(0) == 1

    t.store.arm("read", 2, other_engine_resumes)  # between e1's first read and its second
    t.e1.run_once(0)
    t.pump()
    assert t.dead.poll(0) == []
    assert t.client.status(rid).status == "RUNNING"
    assert [r.task for r in t.requests()] == ["second"]


def test_a_success_decided_while_another_engine_fails_the_run_is_reverted() -> None:
    t = Two()
    rid = t.client.submit(BESIDE, {})
    t.pump()
    reqs = {r.task: r for r in t.requests()}
    t.send(t.result(reqs["keep"], kept=1))
    err = {"type": "ValueError", "message": "no", "traceback": "", "types": ["ValueError"]}
    failed = Event(
        protocol.TASK_FAILED,
        protocol.result_id(rid, "breaks", 1),
        rid,
        "breaks",
        1,
        {"worker": "w", "error": err},
        protocol.now_ms(),
    )

    def other_engine_fails_the_run() -> None:
        t.send(failed)
        assert t.e2.run_once(0) == 1

    t.store.arm("commit", 1, other_engine_fails_the_run)  # e1 read the run RUNNING
    t.e1.run_once(0)
    t.pump()
    info = t.client.status(rid)
    assert info.status == "REVERTING"  # the success of "keep" took the compensation step
    [undo] = t.requests()
    assert (undo.task, undo.mode) == ("keep", protocol.MODE_REVERT)
    t.send(
        Event(
            protocol.TASK_REVERTED, protocol.revert_result_id(rid, "keep", 1), rid, "keep", 1, {"worker": "w"}
        )
    )
    t.pump()
    assert t.client.status(rid).status == "REVERTED"


def test_a_retry_starts_a_task_whose_predecessor_succeeded_meanwhile() -> None:
    t = Two()
    rid = t.client.submit(RETRIED, {})
    t.pump()
    reqs = {r.task: r for r in t.requests()}
    err = {"type": "ValueError", "message": "no", "traceback": "", "types": ["ValueError"]}
    failed = Event(
        protocol.TASK_FAILED,
        protocol.result_id(rid, "breaks", 1),
        rid,
        "breaks",
        1,
        {"worker": "w", "error": err},
        protocol.now_ms(),
    )
    t.send(failed)
    t.pump()
    assert t.client.status(rid).status == "FAILED"  # "first" still running
    t.send(t.control(rid, protocol.RUN_RETRY))

    def first_succeeds_on_the_other_engine() -> None:
        t.send(t.result(reqs["first"], a=1))
        assert t.e2.run_once(0) == 1

    t.store.arm("commit", 1, first_succeeds_on_the_other_engine)  # e1 read the joins before
    t.e1.run_once(0)
    t.pump()
    assert t.client.status(rid).status == "RUNNING"
    assert sorted(r.task for r in t.requests()) == ["breaks", "second"]


def test_compensation_goes_on_when_a_revert_and_a_skip_are_decided_at_once() -> None:
    from workers.execute import not_started

    t = Two()
    rid = t.client.submit(COMPENSATED, {})
    t.pump()
    reqs = {r.task: r for r in t.requests()}
    t.send(t.result(reqs["pre"], p=1))
    t.send(t.result(reqs["keep"], kept=1))
    t.pump()
    [succ_req] = t.requests()
    err = {"type": "ValueError", "message": "no", "traceback": "", "types": ["ValueError"]}
    t.send(
        Event(
            protocol.TASK_FAILED,
            protocol.result_id(rid, "breaks", 1),
            rid,
            "breaks",
            1,
            {"worker": "w", "error": err},
            protocol.now_ms(),
        )
    )
    t.pump()  # REVERTING: "keep" reverts; "pre" waits for its successor "succ" (scheduled)
    [undo_keep] = t.requests()
    assert undo_keep.task == "keep"
    t.send(not_started(succ_req, "w", "the run is REVERTING"))  # e1 takes this

    def keep_reverted_on_the_other_engine() -> None:
        rev = Event(
            protocol.TASK_REVERTED, protocol.revert_result_id(rid, "keep", 1), rid, "keep", 1, {"worker": "w"}
        )
        t.send(rev)
        assert t.e2.run_once(0) == 1

    t.store.arm("commit", 1, keep_reverted_on_the_other_engine)
    t.e1.run_once(0)
    t.pump()
    assert [r.task for r in t.requests()] == ["pre"]  # compensation went on


def test_a_cancel_skips_a_task_another_engine_scheduled_meanwhile() -> None:
    t = Two()
    rid = t.client.submit(FLAKY, {})
    t.pump()
    [req] = t.requests()
    err = {"type": "ValueError", "message": "no", "traceback": "", "types": ["ValueError"]}
    t.send(
        Event(
            protocol.TASK_FAILED,
            protocol.result_id(rid, "flaky", 1),
            rid,
            "flaky",
            1,
            {"worker": "w", "error": err},
            protocol.now_ms(),
        )
    )
    t.pump()  # FAILED at attempt 1, its retry timer armed
    [timer] = [ev for ev in (protocol.decode(raw) for raw in t.store.read_all(rid, "timers").values())]
    assert isinstance(timer, Event)
    t.send(t.control(rid, protocol.RUN_CANCEL))

    def retry_timer_fires_on_the_other_engine() -> None:
        t.send(timer)
        assert t.e2.run_once(0) == 1

    t.store.arm("commit", 1, retry_timer_fires_on_the_other_engine)  # e1 read the task FAILED
    t.e1.run_once(0)
    t.pump()
    info = t.client.status(rid)
    assert info.status == "CANCELLED"
    assert info.tasks["flaky"].status == "SKIPPED"


def test_a_retry_restarts_a_task_that_failed_on_another_engine_meanwhile() -> None:
    t = Two()
    rid = t.client.submit(RETRIED, {})
    t.pump()
    assert sorted(r.task for r in t.requests()) == ["breaks", "first"]
    err = {"type": "ValueError", "message": "no", "traceback": "", "types": ["ValueError"]}

    def failed(task: str) -> Event:
        body = {"worker": "w", "error": err}
        return Event(
            protocol.TASK_FAILED, protocol.result_id(rid, task, 1), rid, task, 1, body, protocol.now_ms()
        )

    t.send(failed("breaks"))
    t.pump()
    assert t.client.status(rid).status == "FAILED"  # "first" still running
    t.send(t.control(rid, protocol.RUN_RETRY))

    def first_fails_on_the_other_engine() -> None:
        t.send(failed("first"))
        assert t.e2.run_once(0) == 1

    t.store.arm("commit", 1, first_fails_on_the_other_engine)  # e1 read "first" running
    t.e1.run_once(0)
    t.pump()
    assert t.client.status(rid).status == "RUNNING"
    assert sorted((r.task, r.attempt) for r in t.requests()) == [("breaks", 2), ("first", 2)]
