"""Committing ahead (runner/engine/ahead.py): the first event of each run in a batch is read in
one round trip and committed in another, and the batch's outcome is what handling each event
alone gives — with a conflict, a repeated event, a malformed message, an unknown run and a
redelivered event among them.

Driven on the in-memory store and transport; the store counts its calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from runner import flow, protocol, task
from runner.broker import ENGINE_QUEUE, Delivery, Outgoing, task_queue
from runner.broker.base import DEAD_QUEUE
from runner.broker.local import LocalHub
from runner.client import Client
from runner.define.tasks import Registry
from runner.engine import Engine
from runner.engine.ahead import commit_ahead
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


FLOW = flow.linear("ahead_two", first, second).compile(reg)


class CountingStore(MemoryStore):
    """Counts commits alone and in batches; runs ``before_batch`` once, before the next batch."""

    def __init__(self) -> None:
        super().__init__()
        self.single: list[str] = []  # event ids committed alone
        self.batches: list[list[str]] = []  # event ids of each commit_many
        self.read_batches: list[int] = []
        self.before_batch: Callable[[], None] | None = None

    def commit(self, c: Commit) -> CommitResult:
        self.single.append(c.event_id)
        return super().commit(c)

    def commit_many(self, commits: Sequence[Commit]) -> list[CommitResult]:
        if self.before_batch is not None:
            fn, self.before_batch = self.before_batch, None
            fn()
        self.batches.append([c.event_id for c in commits])
        return [MemoryStore.commit(self, c) for c in commits]

    def read_many(
        self, reads: Sequence[tuple[str, Mapping[str, Sequence[str]]]]
    ) -> list[dict[str, list[bytes | None]]]:
        self.read_batches.append(len(reads))
        return super().read_many(reads)


class Rig:
    def __init__(self) -> None:
        self.hub = LocalHub()
        self.store = CountingStore()
        self.engine = Engine(CFG, self.store, self.hub.connect())
        self.engine.start()
        self.other = Engine(CFG, self.store, self.hub.connect())  # started only when needed
        self.client = Client(CFG, self.store, self.hub.connect)
        self.tasks = self.hub.connect()
        self.tasks.consume([task_queue("default")], 1000)
        self.dead = self.hub.connect()
        self.dead.consume([DEAD_QUEUE], 1000)

    def send(self, *events: Event) -> None:
        self.hub.connect().publish([Outgoing(ENGINE_QUEUE, e.id, protocol.encode(e)) for e in events])

    def pump(self) -> None:
        while self.engine.run_once(0):
            pass

    def requests(self) -> list[TaskRequest]:
        out = []
        for d in self.tasks.poll(0):
            msg = protocol.decode(d.body)
            assert isinstance(msg, TaskRequest)
            out.append(msg)
            self.tasks.ack(d)
        return out

    def started(self, n: int) -> tuple[list[str], list[TaskRequest]]:
        """``n`` runs, each with its first task's request taken."""
        rids = [self.client.submit(FLOW, {}) for _ in range(n)]
        self.pump()
        reqs = sorted(self.requests(), key=lambda r: rids.index(r.run_id))
        assert [r.run_id for r in reqs] == rids
        self.store.single.clear()
        self.store.batches.clear()
        return rids, reqs


def result(req: TaskRequest) -> Event:
    return Event(
        protocol.TASK_SUCCEEDED,
        protocol.result_id(req.run_id, req.task, req.attempt),
        req.run_id,
        req.task,
        req.attempt,
        {"values": {"a": 1}, "worker": "w"},
        protocol.now_ms(),
    )


def test_a_batch_commits_the_first_event_of_each_run_together_and_the_rest_alone() -> None:
    r = Rig()
    rids, reqs = r.started(5)
    results = [result(q) for q in reqs]
    r.send(*results, results[0])  # the last: run 0's result again, in the same batch
    assert r.engine.run_once(0) == 6
    assert r.store.batches == [[e.id for e in results]]
    assert r.store.read_batches[-1] == 5
    assert r.store.single == [results[0].id]  # the repeat: decided alone, found applied
    assert sorted(q.run_id for q in r.requests()) == sorted(rids)  # each successor once
    for rid in rids:
        info = r.client.status(rid)
        assert (info.tasks["first"].status, info.tasks["second"].status) == ("SUCCESS", "SCHEDULED")
        succeeded = [h for h in r.client.history(rid) if h.scope == "first" and h.new == "SUCCESS"]
        assert len(succeeded) == 1


def test_a_commit_ahead_that_conflicts_is_decided_again_with_the_run_as_it_now_is() -> None:
    r = Rig()
    rids, reqs = r.started(3)
    pause = Event(
        protocol.RUN_PAUSE, f"pause:{uuid.uuid4().hex}", rids[1], body={"by": "t"}, at_ms=protocol.now_ms()
    )

    def other_engine_pauses_run_1() -> None:  # between the batch's reads and its commits
        r.send(pause)
        r.other.start()
        assert r.other.run_once(0) == 1
        r.store.single.clear()  # the other engine's commit

    r.store.before_batch = other_engine_pauses_run_1
    r.send(*(result(q) for q in reqs))
    r.engine.run_once(0)
    assert r.store.single == [result(reqs[1]).id]  # its commit ahead conflicted: alone again
    paused = r.client.status(rids[1])
    assert paused.status == "PAUSED"
    assert paused.tasks["first"].status == "SUCCESS"
    assert paused.tasks["second"].status == "PENDING"  # held by the pause, not scheduled
    assert sorted(q.run_id for q in r.requests()) == sorted([rids[0], rids[2]])


def test_a_malformed_message_and_an_unknown_run_in_a_batch_cost_only_themselves() -> None:
    r = Rig()
    rids, reqs = r.started(2)
    stray = Event(
        protocol.TASK_SUCCEEDED,
        "result:nobody:first:1",
        "nobody",
        "first",
        1,
        {"values": {"a": 1}, "worker": "w"},
        protocol.now_ms(),
    )
    r.send(result(reqs[0]), stray)
    r.hub.connect().publish([Outgoing(ENGINE_QUEUE, "junk", b"\xc1 not msgpack")])
    r.send(result(reqs[1]))
    assert r.engine.run_once(0) == 4
    assert r.store.batches == [[result(reqs[0]).id, result(reqs[1]).id]]  # the stray: no commit
    assert [d.message_id for d in r.dead.poll(0)] == ["junk"]
    assert sorted(q.run_id for q in r.requests()) == sorted(rids)


def delivery(e: Event, redelivered: bool = False) -> Delivery:
    body = protocol.encode(e)
    return Delivery(body, ENGINE_QUEUE, "application/x-msgpack", e.id, redelivered, 0, {})


def test_nothing_from_the_first_redelivered_event_on_is_committed_ahead() -> None:
    r = Rig()
    _, reqs = r.started(4)
    batch = [delivery(result(reqs[0])), delivery(result(reqs[1])), delivery(result(reqs[2]), True)]
    batch.append(delivery(result(reqs[3])))
    ahead = commit_ahead(r.engine.reader, r.store, batch)
    assert set(ahead) == {id(batch[0]), id(batch[1])}
    assert r.store.batches == [[result(reqs[0]).id, result(reqs[1]).id]]


def test_a_lone_run_is_not_committed_ahead() -> None:
    r = Rig()
    _, reqs = r.started(1)
    assert commit_ahead(r.engine.reader, r.store, [delivery(result(reqs[0]))]) == {}
    assert r.store.batches == []
