"""G3's orderings, recorded: what engines and workers send is confirmed before the message
that caused it is acknowledged (and, for the engine, before its outbox is marked sent).

A recording broker (the local broker, logging each call in order) and a recording store
(logging commits and mark-sent) stand in for RabbitMQ and Redis. The local broker confirms a
publish by returning from it, so "sent" and "confirmed" are recorded as separate calls only
where the code makes them separate: the engine sends, then awaits the confirms of the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from runner import flow, protocol, task
from runner.broker import ENGINE_QUEUE, Delivery, Outgoing, task_queue
from runner.broker.local import LocalBroker, LocalHub
from runner.client import Client
from runner.config import Config
from runner.define.tasks import Registry
from runner.engine import Engine
from runner.errors import PublishError
from runner.protocol import TaskRequest
from runner.store import Commit, CommitResult
from runner.store.memory import MemoryStore
from tests.helpers.harness import CFG, Harness
from workers.loop import Worker

reg = Registry()


@task(provides="x", registry=reg)
def first() -> int:
    return 1


@task(provides="y", registry=reg)
def second(x: int) -> int:
    return x + 1


@task(provides="z", registry=reg)
def third(x: int) -> int:
    return x + 2


FAN = flow.graph("fan", first, second, third, edges=[("first", "second"), ("first", "third")])

Log = list[tuple[Any, ...]]


class RecordingBroker(LocalBroker):
    """The local broker, logging send / publish (returned: confirmed) / confirm / ack."""

    def __init__(self, hub: LocalHub, log: Log) -> None:
        super().__init__(hub)
        self.log = log
        self.fail_results = False

    def send(self, messages: Sequence[Outgoing]) -> None:
        self.log.append(("send", [m.message_id for m in messages]))
        super().publish(messages)  # not `publish`: a send is not a confirmed publish

    def publish(self, messages: Sequence[Outgoing]) -> None:
        if self.fail_results and any(m.message_id.startswith("result:") for m in messages):
            raise PublishError("broker hiccup")
        super().publish(messages)
        self.log.append(("confirmed", [m.message_id for m in messages]))

    def confirm(self) -> None:
        self.log.append(("confirm",))

    def ack(self, delivery: Delivery) -> None:
        self.log.append(("ack", delivery.message_id))
        super().ack(delivery)


class RecordingStore(MemoryStore):
    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def commit(self, c: Commit) -> CommitResult:
        result = super().commit(c)
        if result.applied:
            self.log.append(("commit", c.event_id, list(c.outbox)))
        return result

    def mark_sent_many(self, sent: Mapping[str, Sequence[str]]) -> None:
        self.log.append(("mark_sent", [m for ids in sent.values() for m in ids]))
        super().mark_sent_many(sent)


def check_engine_order(log: Log) -> int:
    """For every event acknowledged whose commit caused messages: each message was sent, then
    a confirm was awaited, then the message was marked sent, and only then the event acked.
    Returns how many (event, message) pairs were checked."""
    outbox = {e[1]: e[2] for e in log if e[0] == "commit"}
    checked = 0
    for i, entry in enumerate(log):
        if entry[0] != "ack":
            continue
        for m in outbox.get(entry[1], []):
            sent = next(j for j, e in enumerate(log) if e[0] == "send" and m in e[1])
            confirm = next((j for j in range(sent, i) if log[j][0] == "confirm"), None)
            assert confirm is not None, f"event {entry[1]} acked before the confirm of {m}"
            marked = next((j for j in range(confirm, i) if log[j][0] == "mark_sent" and m in log[j][1]), None)
            assert marked is not None, f"event {entry[1]} acked before {m} was confirmed, then marked sent"
            checked += 1
    return checked


def test_the_engine_confirms_then_marks_sent_then_acks_every_event_of_a_batch() -> None:
    log: Log = []
    hub = LocalHub()
    store = RecordingStore(log)
    engine = Engine(CFG, store, RecordingBroker(hub, log))
    engine.start()
    client = Client(CFG, store, hub.connect)
    tasks = hub.connect()
    tasks.consume([task_queue("default")], 10_000)
    runs = [client.submit(FAN.compile(reg), {}) for _ in range(3)]  # one batch of three submits
    assert engine.run_once(0) == 3
    firsts = tasks.poll(0)
    assert sorted(protocol.decode(d.body).run_id for d in firsts) == sorted(runs)  # type: ignore[union-attr]
    results = []
    for d in firsts:
        req = protocol.decode(d.body)
        assert isinstance(req, TaskRequest)
        rid = protocol.result_id(req.run_id, req.task, req.attempt)
        ev = protocol.Event(
            protocol.TASK_SUCCEEDED, rid, req.run_id, req.task, 1, {"values": {"x": 1}, "worker": "w"}, 1
        )
        results.append(Outgoing(ENGINE_QUEUE, rid, protocol.encode(ev)))
    hub.connect().publish(results)  # one batch of three results, each fanning out to two
    assert engine.run_once(0) == 3
    assert check_engine_order(log) == 3 + 3 * 2
    assert store.read_all(runs[0], "outbox") == {}


def _worker(h: Harness, log: Log, cfg: Config) -> tuple[Worker, RecordingBroker]:
    h.tasks.close()  # the worker under test takes the requests
    broker = RecordingBroker(h.hub, log)
    w = Worker(cfg, broker, reg, concurrency=2, name="w1", store=h.store)
    w.start()
    return w, broker


def check_worker_order(log: Log) -> int:
    """Every request acknowledged only after the publish of its result, or of its lease, was
    confirmed. Returns how many acks were checked."""
    checked = 0
    for i, entry in enumerate(log):
        if entry[0] != "ack" or not entry[1].startswith("req:"):
            continue
        _, run, name, attempt = entry[1].split(":")
        covers = (protocol.result_id(run, name, int(attempt)), protocol.leased_id(run, name, int(attempt)))
        assert any(e[0] == "confirmed" and any(m.startswith(covers) for m in e[1]) for e in log[:i]), (
            f"request {entry[1]} acked before its result or lease was confirmed"
        )
        checked += 1
    return checked


def finish(h: Harness, w: Worker, rid: str, rounds: int = 400) -> str:
    for _ in range(rounds):
        h.pump()
        info = h.client.status(rid)
        if info.done:
            return info.status
        w.run_once(0.05)
    raise AssertionError(f"run {rid} unfinished: {h.client.status(rid)}")


def test_a_worker_acks_a_request_only_after_its_result_is_confirmed() -> None:
    log: Log = []
    h = Harness()
    w, _ = _worker(h, log, Config())
    try:
        rid = h.client.submit(FAN.compile(reg), {})
        assert finish(h, w, rid) == "SUCCESS"
        assert check_worker_order(log) == 3
    finally:
        w._pool.shutdown()
        if w._beats is not None:
            w._beats.stop()


def test_a_result_that_cannot_be_published_keeps_its_request_unacknowledged() -> None:
    log: Log = []
    h = Harness()
    w, broker = _worker(h, log, Config())
    try:
        rid = h.client.submit(flow.linear("one", first).compile(reg), {})
        h.pump()
        broker.fail_results = True
        done = threading.Event()
        execute = w._execute

        def tracked(r):  # type: ignore[no-untyped-def]
            execute(r)
            done.set()

        w._execute = tracked  # type: ignore[method-assign]
        w.run_once(0)  # dispatches
        assert done.wait(10)
        w.run_once(0)  # the result's publish fails
        assert not [e for e in log if e[0] == "ack"]
        assert len(broker._unacked) == 1  # the request is still held: a crash now redelivers it
        broker.fail_results = False
        assert finish(h, w, rid) == "SUCCESS"
        assert check_worker_order(log) == 1
    finally:
        w._pool.shutdown()
        if w._beats is not None:
            w._beats.stop()


gate = threading.Event()


@task(provides="x", registry=reg)
def long_one() -> int:
    assert gate.wait(30)
    return 1


def test_a_long_task_gives_its_delivery_back_only_after_its_lease_is_confirmed() -> None:
    log: Log = []
    h = Harness()
    w, _ = _worker(h, log, Config(ack_after_s=0))
    gate.clear()
    try:
        rid = h.client.submit(flow.linear("long", long_one).compile(reg), {})
        h.pump()
        for _ in range(400):  # bounded: until the worker took the lease
            w.run_once(0.01)
            if any(e[0] == "ack" for e in log):
                break
        assert any(e[0] == "confirmed" and e[1][0].startswith("leased:") for e in log)
        assert check_worker_order(log) == 1
        gate.set()
        assert finish(h, w, rid) == "SUCCESS"
    finally:
        gate.set()
        w._pool.shutdown()
        if w._beats is not None:
            w._beats.stop()
