"""The engine's event processing on the in-memory store and transport (no network)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from runner import protocol
from runner.broker import ENGINE_QUEUE, Delivery, Outgoing
from runner.broker.local import LocalBroker, LocalHub
from runner.client import Client
from runner.engine import Engine
from runner.protocol import Event, TaskRequest
from runner.store import Commit
from runner.store.memory import MemoryStore
from tests.helpers import flows
from tests.helpers.harness import CFG, Harness


def transitions_of(client: Client, run_id: str) -> Counter[tuple[str, str, str, int]]:
    return Counter((h.scope, h.old, h.new, h.attempt) for h in client.history(run_id) if h.old != h.new)


def test_redelivered_result_applies_once_and_publishes_nothing_new() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    ev = h.result(req, v1=1)
    h.send(ev)
    h.pump()
    [nxt] = h.requests()
    before = h.client.history(rid)
    h.send(ev)  # the same event again, as after a crash before the ack
    h.pump()
    assert h.requests() == []
    assert h.client.history(rid) == before
    h.send(h.result(nxt, v2=2))
    h.pump()
    info = h.client.status(rid)
    assert info.status == "SUCCESS" and info.result == {"v2": 2}
    assert max(transitions_of(h.client, rid).values()) == 1


def test_commit_without_publish_is_republished_on_redelivery() -> None:
    """A crash after the commit and before the publish: the redelivered event sends the outbox."""
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    ev = h.result(req, v1=1)
    commit = h.engine._decide(ev)
    assert commit is not None and commit.outbox
    assert h.store.commit(commit).applied  # ...and the engine "died" here
    h.send(ev)
    h.pump()
    [nxt] = h.requests()
    assert nxt.task == "s2" and nxt.args == {"x": 1}
    assert transitions_of(h.client, rid)[("s2", "PENDING", "SCHEDULED", 1)] == 1


def test_result_of_a_stale_attempt_is_fenced_and_recorded() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    stale = Event(
        protocol.TASK_SUCCEEDED,
        protocol.result_id(rid, req.task, 7),
        rid,
        req.task,
        7,
        {"values": {"v1": 99}, "worker": "late"},
        protocol.now_ms(),
    )
    h.send(stale)
    h.pump()
    assert h.requests() == []
    assert h.client.status(rid).tasks["s1"].status == "SCHEDULED"
    notes = [e.extra.get("note", "") for e in h.client.history(rid)]
    assert any("fenced: attempt 7" in n for n in notes)


def test_failed_task_fails_the_run_with_type_message_and_traceback() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    h.send(
        Event(
            protocol.TASK_FAILED,
            protocol.result_id(rid, req.task, 1),
            rid,
            req.task,
            1,
            {"error": {"type": "KeyError", "message": "'k'", "traceback": "Traceback..."}, "worker": "w"},
            protocol.now_ms(),
        )
    )
    h.pump()
    info = h.client.status(rid)
    assert info.status == "FAILED"
    assert info.error is not None
    assert (info.error["task"], info.error["type"], info.error["message"]) == ("s1", "KeyError", "'k'")
    assert info.error["traceback"] == "Traceback..."
    assert h.store.list_runs("FAILED", 10) == [rid]


def test_malformed_events_are_dead_lettered_with_reason() -> None:
    h = Harness()
    bad = h.hub.connect()
    bad.publish([Outgoing(ENGINE_QUEUE, "junk", b"\xc1\xc1not msgpack")])
    h.pump()
    dead = h.hub.connect()
    dead.consume(["dead"], 10)
    [d] = dead.poll(0)
    assert "not msgpack" in d.headers["x-ackflow-reason"]
    assert d.headers["x-ackflow-queue"] == ENGINE_QUEUE


def test_event_for_unknown_run_is_dropped_not_looped() -> None:
    h = Harness()
    h.send(Event(protocol.TASK_STARTED, "started:nope:t:1", "nope", "t", 1, {"worker": "w"}, 1))
    h.pump()
    assert h.hub.depth(ENGINE_QUEUE) == 0


def test_two_engines_racing_on_a_wide_join_fire_it_exactly_once() -> None:
    """Completions of a 200-wide fan-out processed by two engines at once: conflicts retry."""
    h = Harness()
    second = Engine(CFG, h.store, h.hub.connect())
    second.start()
    rid = h.client.submit(flows.fanout(200), {"n": 1})
    h.pump()
    [root] = h.requests()
    h.send(h.result(root, seed=1))
    h.pump()
    leaves = h.requests()
    assert len(leaves) == 200
    for r in leaves:
        h.send(h.result(r, **{r.provides[0]: 1}))
    stop = threading.Event()

    def serve(e: Engine) -> None:
        while not stop.is_set():
            e.run_once(0.01)

    threads = [threading.Thread(target=serve, args=(e,), daemon=True) for e in (h.engine, second)]
    got: list[TaskRequest] = []
    watch = h.store.watch(rid)
    deadline = time.monotonic() + 120  # a backstop against a hang, not a timed assertion
    try:
        for t in threads:
            t.start()
        while not got:
            # processed counts an event once its outbox is confirmed: read it before the queue
            all_applied = h.engine.processed + second.processed >= 1 + 1 + 200
            got = h.requests()
            if all_applied or h.client.status(rid).status != "RUNNING":
                break  # every result applied: the join's request is out now or never
            assert time.monotonic() < deadline, f"{h.engine.processed + second.processed} events applied"
            watch.wait(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert h.client.status(rid).status == "RUNNING"
    assert [r.task for r in got] == ["gather"]
    assert len(got[0].args) == 200
    assert max(transitions_of(h.client, rid).values()) == 1
    assert h.engine.processed + second.processed == 1 + 1 + 200


def test_memory_store_replays_only_unsent_outbox() -> None:
    s = MemoryStore()
    c = Commit("r", "e1", outbox={"m1": b"x", "m2": b"y"}, writes={"meta": {"status": b"RUNNING"}})
    assert s.commit(c).applied
    s.mark_sent("r", ["m1"])
    again = s.commit(c)
    assert again.outcome == "duplicate" and again.unsent == {"m2": b"y"}


def test_a_retry_after_an_outage_does_not_count_as_a_poison_delivery() -> None:
    """An event whose publish fails (broker down) is retried later; only crashes may count."""
    from runner.broker import Delivery
    from runner.errors import PublishError

    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    ev = h.result(req, v1=1)

    class DownBroker:
        can_wake = False

        def publish(self, messages: object) -> None:
            raise PublishError("broker down")

        def send(self, messages: object) -> None:
            raise PublishError("broker down")

        def requeue(self, delivery: object) -> None:
            pass  # its connection is gone: the broker hands the delivery back by itself

    real = h.engine.broker
    d = Delivery(protocol.encode(ev), ENGINE_QUEUE, protocol.CONTENT_TYPE, ev.id, True, 1, {})
    h.engine.broker = DownBroker()  # type: ignore[assignment]
    for _ in range(CFG.delivery_limit + 2):
        assert h.engine.handle(d) is False  # not acknowledged, not dead-lettered
    h.engine.broker = real
    assert h.store.count_delivery(rid, ev.id, 0) == 0
    assert h.engine.handle(d) is True
    [nxt] = h.requests()
    assert nxt.task == "s2"


def failed(req: TaskRequest, etype: str = "ConnectionError") -> Event:
    return Event(
        protocol.TASK_FAILED,
        protocol.result_id(req.run_id, req.task, req.attempt),
        req.run_id,
        req.task,
        req.attempt,
        {"error": {"type": etype, "message": "down", "types": [etype]}, "worker": "w"},
        protocol.now_ms(),
    )


def test_a_retry_timer_fired_twice_starts_one_new_attempt() -> None:
    from runner import flow
    from runner.define.retry import Retry

    h = Harness()
    f = flow.linear("retry1", flows.inc.bind("s1", retry=Retry(attempts=3, delay=30, jitter=False)))
    rid = h.client.submit(f, {"x": 1})
    h.pump()
    [req] = h.requests()
    h.send(failed(req))
    h.pump()
    assert h.requests() == []  # waiting out the backoff: nothing sent, nothing held
    assert h.client.status(rid).tasks["s1"].retry_at_ms is not None
    due, _ = h.store.claim_timers(protocol.now_ms() + 60_000, 10, 1_000)
    assert [t.timer_id for t in due] == [protocol.timer_id("retry", rid, "s1", 2)]
    for _ in range(2):  # two engines fired it, or one fired it and died before removing it
        h.hub.connect().publish([Outgoing(ENGINE_QUEUE, due[0].timer_id, due[0].event)])
    h.pump()
    [again] = h.requests()
    assert (again.task, again.attempt) == ("s1", 2)
    h.send(h.result(again, out=2))
    h.pump()
    assert h.client.status(rid).status == "SUCCESS"
    assert transitions_of(h.client, rid)[("s1", "FAILED", "SCHEDULED", 2)] == 1
    assert max(transitions_of(h.client, rid).values()) == 1


def test_a_paused_run_records_results_and_holds_successors() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(3), {"v0": 0})
    h.pump()
    [req] = h.requests()
    h.send(Event(protocol.RUN_PAUSE, "pause:1", rid, body={"by": "t"}, at_ms=protocol.now_ms()))
    h.pump()
    h.send(h.result(req, v1=1))
    h.pump()
    assert h.requests() == []
    info = h.client.status(rid)
    assert (
        info.status == "PAUSED"
        and info.tasks["s1"].status == "SUCCESS"
        and info.tasks["s2"].status == "PENDING"
    )
    h.send(Event(protocol.RUN_RESUME, "resume:1", rid, body={"by": "t"}, at_ms=protocol.now_ms()))
    h.pump()
    [nxt] = h.requests()
    assert (nxt.task, nxt.args) == ("s2", {"x": 1})


def test_control_of_an_unknown_run_is_dropped() -> None:
    h = Harness()
    h.send(Event(protocol.RUN_PAUSE, "pause:x", "no-such-run", body={"by": "t"}, at_ms=protocol.now_ms()))
    h.pump()
    assert h.store.history("no-such-run") == []


class RecordingBroker(LocalBroker):
    """The engine's side of the broker, logging send, confirm and ack in order."""

    def __init__(self, hub: LocalHub, log: list[str]) -> None:
        super().__init__(hub)
        self.log = log

    def send(self, messages: Sequence[Outgoing]) -> None:
        self.log += [f"send {m.message_id}" for m in messages]
        super().send(messages)

    def confirm(self) -> None:
        self.log.append("confirm")

    def ack(self, delivery: Delivery) -> None:
        self.log.append(f"ack {delivery.message_id}")
        super().ack(delivery)


class RecordingStore(MemoryStore):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def mark_sent_many(self, sent: Mapping[str, Sequence[str]]) -> None:
        self.log += [f"mark_sent {mid}" for ids in sent.values() for mid in ids]
        super().mark_sent_many(sent)


def test_the_engine_sends_then_awaits_confirms_then_marks_sent_then_acks() -> None:
    """G3: an event is acknowledged only after its commit's messages are confirmed and
    marked sent; marking them sent before the confirms would lose them in a crash."""
    log: list[str] = []
    hub = LocalHub()
    store = RecordingStore(log)
    engine = Engine(CFG, store, RecordingBroker(hub, log))
    engine.start()
    client = Client(CFG, store, hub.connect)
    rid = client.submit(flows.chain(2), {"v0": 1})
    while engine.run_once(0):
        pass
    request = f"req:{rid}:s1:1"
    submit = next(entry.split()[1] for entry in log if entry.startswith("ack "))
    assert log == [f"send {request}", "confirm", f"mark_sent {request}", f"ack {submit}"], log
