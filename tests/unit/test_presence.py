"""Workers' heartbeat records (runner.presence, workers.presence), driven step by step."""

from __future__ import annotations

import logging
import threading

import pytest

from runner import flow, protocol, task
from runner.config import Config
from runner.define.tasks import Registry
from runner.errors import StoreUnavailable
from runner.presence import LIVE, LOST, STOPPED, WorkerRecord, list_workers
from runner.store.memory import MemoryStore
from tests.helpers.harness import Harness
from workers.loop import Worker

reg = Registry()
gate = threading.Event()
entered = threading.Event()


@task(provides="o", registry=reg)
def held() -> int:
    entered.set()
    assert gate.wait(30)
    return 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _workers(store: MemoryStore) -> list[WorkerRecord]:
    return list_workers(store, protocol.now_ms(), 600)


def test_a_worker_records_itself_its_running_tasks_and_its_clean_stop() -> None:
    gate.clear()
    entered.clear()
    h = Harness()
    h.tasks.close()  # the worker under test takes the requests
    clock = Clock()
    cfg = Config(worker_beat_s=5)
    w = Worker(
        cfg, h.hub.connect(), reg, ["default", "io"], 2, "w-1", h.store, clock=clock, heartbeat_thread=False
    )
    w.start()
    (rec,) = _workers(h.store)
    assert (rec.id, rec.queues, rec.concurrency, rec.tasks) == ("w-1", ["default", "io"], 2, ["held"])
    assert rec.state(protocol.now_ms()) == LIVE and rec.version and rec.pid > 0 and not rec.running
    rid = h.client.submit(flow.linear("p", held).compile(reg), {})
    h.pump()
    w.run_once(0)
    assert entered.wait(10)
    w.beat()  # not due yet: the record is the one written at start
    assert not _workers(h.store)[0].running
    clock.now += 5
    w.beat()
    (rec,) = _workers(h.store)
    assert [(r.run_id, r.task, r.attempt) for r in rec.running] == [(rid, "held", 1)]
    assert rec.unacked == {"task.default": 1}
    gate.set()
    w.stop()
    w.run()  # drains what runs, then says it stopped
    (rec,) = _workers(h.store)
    assert rec.state(protocol.now_ms()) == STOPPED and not rec.running


def test_a_worker_silent_for_three_beats_is_lost() -> None:
    rec = WorkerRecord("w", "h", 1, ["default"], 1, [], beat_s=5, heard_ms=10_000)
    assert rec.state(25_000) == LIVE
    assert rec.state(25_001) == LOST


def test_a_record_that_cannot_be_read_is_left_out_of_the_list() -> None:
    store = MemoryStore()
    now = protocol.now_ms()
    store.beat_worker("bad", b"\xc1not msgpack", now, 600)
    store.beat_worker("odd", protocol.pack({"no": "id"}), now, 600)
    good = WorkerRecord("good", "h", 1, ["default"], 1, ["t"])
    store.beat_worker("good", good.encode(), now, 600)
    assert [w.id for w in list_workers(store, now, 600)] == ["good"]


class DownStore(MemoryStore):
    def beat_worker(self, worker_id: str, record: bytes, now_ms: int, keep_s: int) -> None:
        raise StoreUnavailable("redis is down")


def test_a_failed_record_write_warns_once_and_never_stops_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    clock = Clock()
    w = Worker(Config(), h.hub.connect(), reg, None, 1, "w", DownStore(), clock=clock, heartbeat_thread=False)
    with caplog.at_level(logging.WARNING, "ackflow.worker"):
        w.start()
        for _ in range(3):
            clock.now += 10
            w.beat()
    assert [r.getMessage() for r in caplog.records].count(
        "could not record this worker's heartbeat in Redis: redis is down"
    ) == 1
    w._pool.shutdown()
