"""One bad delivery costs one dead letter, never a consumer (H1): the engine and the worker
on the in-process transport and memory store, driven step by step."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from runner import flow, protocol, task
from runner.broker import ENGINE_QUEUE, Delivery, Outgoing, task_queue
from runner.broker.local import LocalBroker
from runner.client import RunInfo
from runner.config import Config
from runner.define.tasks import Registry
from runner.errors import PublishError
from tests.helpers import flows
from tests.helpers.harness import Harness
from tests.helpers.wire import KILLERS
from workers.loop import Worker

reg = Registry()


@task(provides="o", registry=reg)
def quick(x: int) -> int:
    return x + 1


@task(provides="o", registry=reg)
def crashy(x: int) -> int:
    return x


def publish_raw(h: Harness, queue: str, bodies: list[bytes]) -> None:
    h.hub.connect().publish([Outgoing(queue, f"bad-{i}", b) for i, b in enumerate(bodies)])


def test_bodies_that_killed_engines_are_dead_lettered_and_the_batch_goes_on() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    # The healthy result shares a batch with the killers, before and after them.
    publish_raw(h, ENGINE_QUEUE, [KILLERS[0][0], KILLERS[1][0]])
    h.send(h.result(req, v1=1))
    publish_raw(h, ENGINE_QUEUE, [b for b, _ in KILLERS[2:]])
    h.pump()
    [nxt] = h.requests()
    assert nxt.task == "s2"
    dead = h.dead_letters()
    assert sorted(d.body for d in dead) == sorted(b for b, _ in KILLERS)
    for body, reason in KILLERS:
        [d] = [d for d in dead if d.body == body]
        assert reason in d.headers["x-ackflow-reason"]
        assert d.headers["x-ackflow-queue"] == ENGINE_QUEUE
    h.send(h.result(nxt, v2=2))
    h.pump()
    info = h.client.status(rid)
    assert (info.status, info.result) == ("SUCCESS", {"v2": 2})
    assert h.hub.depth(ENGINE_QUEUE) == 0


def test_any_failure_handling_one_event_dead_letters_it_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not only decide errors: a failure anywhere in one event's handling (here, a bug that
    escapes decoding) parks that event; the events around it are applied."""
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    real = protocol.decode

    def buggy(data: bytes) -> protocol.Message:
        if data == b"\x90":  # an (invalid) empty array: the one body the bug trips on
            raise RuntimeError("decoder bug")
        return real(data)

    monkeypatch.setattr(protocol, "decode", buggy)
    publish_raw(h, ENGINE_QUEUE, [b"\x90"])
    h.send(h.result(req, v1=1))
    h.pump()
    [d] = h.dead_letters()
    assert d.body == b"\x90"
    assert d.headers["x-ackflow-reason"] == "engine error: RuntimeError: decoder bug"
    assert [r.exc_info is not None for r in caplog.records if "bad-0" in r.getMessage()] == [True]
    [nxt] = h.requests()
    h.send(h.result(nxt, v2=2))
    h.pump()
    assert h.client.status(rid).status == "SUCCESS"


def test_an_outage_while_handling_an_event_is_not_a_dead_letter() -> None:
    """A broker failure keeps today's behaviour: unacknowledged, nothing dead-lettered."""
    h = Harness()
    h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    ev = h.result(req, v1=1)

    class Down(LocalBroker):
        def send(self, messages: Any) -> None:
            raise PublishError("broker down")

    real = h.engine.broker
    h.engine.broker = Down(h.hub)
    d = Delivery(protocol.encode(ev), ENGINE_QUEUE, protocol.CONTENT_TYPE, ev.id, False, 0, {})
    assert h.engine.handle(d) is False
    assert h.dead_letters() == []
    h.engine.broker = real
    assert h.engine.handle(d) is True
    [nxt] = h.requests()
    assert nxt.task == "s2"


class WorkerHarness:
    def __init__(self, concurrency: int = 1) -> None:
        self.h = Harness()
        self.h.tasks.close()  # the worker under test takes the requests
        self.w = Worker(Config(), self.h.hub.connect(), reg, concurrency=concurrency, name="w1")
        self.w.start()

    def finish(self, rid: str, rounds: int = 400) -> RunInfo:
        for _ in range(rounds):
            self.h.pump()
            info = self.h.client.status(rid)
            if info.done:
                return info
            self.w.run_once(0.05)
        raise AssertionError(f"run {rid} unfinished: {self.h.client.status(rid)}")

    def close(self) -> None:
        self.w._pool.shutdown()


def test_requests_that_killed_workers_are_dead_lettered_and_the_worker_goes_on() -> None:
    wh = WorkerHarness()
    h = wh.h
    publish_raw(h, task_queue("default"), [b for b, _ in KILLERS])
    rid = h.client.submit(flow.linear("q", quick).compile(reg), {"x": 1})
    info = wh.finish(rid)
    assert (info.status, info.result) == ("SUCCESS", {"o": 2})
    dead = h.dead_letters()
    assert sorted(d.body for d in dead) == sorted(b for b, _ in KILLERS)
    for body, reason in KILLERS:
        [d] = [d for d in dead if d.body == body]
        assert reason in d.headers["x-ackflow-reason"]
        assert d.headers["x-ackflow-queue"] == task_queue("default")
    wh.close()


def test_a_failure_outside_the_task_code_dead_letters_the_request_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception in the worker's own handling of one request (not the task's: that is a
    task failure) must not hold the delivery and the slot forever."""
    import workers.loop as runtime

    real = runtime.execute
    boom = threading.Event()

    def buggy(req: protocol.TaskRequest, *args: Any, **kwargs: Any) -> protocol.Event:
        if req.fn == "crashy":
            boom.set()
            raise RuntimeError("worker bug")
        return real(req, *args, **kwargs)

    monkeypatch.setattr(runtime, "execute", buggy)
    wh = WorkerHarness(concurrency=1)
    h = wh.h
    bad = h.client.submit(flow.linear("c", crashy).compile(reg), {"x": 1})
    h.pump()
    while not boom.is_set():
        wh.w.run_once(0.05)
    good = h.client.submit(flow.linear("q", quick).compile(reg), {"x": 1})
    assert wh.finish(good).result == {"o": 2}
    [d] = h.dead_letters()
    assert d.message_id == protocol.request_id(bad, "crashy", 1)
    assert d.headers["x-ackflow-reason"] == "worker error: RuntimeError: worker bug"
    assert h.client.status(bad).status == "RUNNING"  # its attempt awaits its timeout or a retry
    wh.close()


def test_any_failure_taking_one_request_dead_letters_it_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only decode errors: a bug that escapes decoding a request parks that request with
    the reason; the worker keeps taking the others (H1, the worker's side)."""
    real = protocol.decode

    def buggy(data: bytes) -> protocol.Message:
        if data == b"\x90":  # an (invalid) empty array: the one body the bug trips on
            raise RuntimeError("decoder bug")
        return real(data)

    monkeypatch.setattr(protocol, "decode", buggy)
    wh = WorkerHarness()
    h = wh.h
    publish_raw(h, task_queue("default"), [b"\x90"])
    rid = h.client.submit(flow.linear("q", quick).compile(reg), {"x": 1})
    info = wh.finish(rid)
    assert (info.status, info.result) == ("SUCCESS", {"o": 2})
    [d] = h.dead_letters()
    assert d.body == b"\x90"
    assert d.headers["x-ackflow-reason"] == "worker error: RuntimeError: decoder bug"
    wh.close()
