"""The engine `Harness`: an engine, a client and a task queue on the in-memory store and the
local broker, stepped by hand (no threads, no network). Unit tests drive flows through it by
reading task requests and sending results."""

from __future__ import annotations

import uuid
from typing import Any

from runner import protocol
from runner.broker import DEAD_QUEUE, ENGINE_QUEUE, Delivery, Outgoing, task_queue
from runner.broker.local import LocalHub
from runner.client import Client
from runner.config import Config
from runner.engine import Engine
from runner.protocol import Event, TaskRequest
from runner.store import keys
from runner.store.memory import MemoryStore

CFG = Config()


class Harness:
    def __init__(self) -> None:
        self.hub = LocalHub()
        self.store = MemoryStore()
        self.engine = Engine(CFG, self.store, self.hub.connect())
        self.engine.start()
        self.client = Client(CFG, self.store, self.hub.connect)
        self.tasks = self.hub.connect()
        self.tasks.consume([task_queue("default")], 10_000)
        self.dead = self.hub.connect()
        self.dead.consume([DEAD_QUEUE], 10_000)

    def pump(self) -> int:
        n = 0
        while self.engine.run_once(0) or n == 0:
            n += 1
            if n > 10_000:
                raise AssertionError("engine never went idle")
        return n

    def requests(self) -> list[TaskRequest]:
        out = []
        for d in self.tasks.poll(0):
            msg = protocol.decode(d.body)
            assert isinstance(msg, TaskRequest)
            out.append(msg)
            self.tasks.ack(d)
        return out

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

    def send(self, event: Event) -> None:
        self.hub.connect().publish([Outgoing(ENGINE_QUEUE, event.id, protocol.encode(event))])

    # --- what a test says to the engine and asks of the run ------------------------------------

    def event(
        self, kind: str, req: TaskRequest, event_id: str, at_ms: int | None = None, **body: Any
    ) -> Event:
        """An event about ``req``'s attempt (from worker "w" unless ``body`` says otherwise)."""
        body.setdefault("worker", "w")
        at = protocol.now_ms() if at_ms is None else at_ms
        return Event(kind, event_id, req.run_id, req.task, req.attempt, body, at)

    def ok(self, req: TaskRequest, **values: Any) -> None:
        """The attempt succeeded with ``values``; the engine applies it."""
        self.send(self.result(req, **values))
        self.pump()

    def fail(self, req: TaskRequest, etype: str = "ValueError") -> None:
        """The attempt failed with an ``etype`` error; the engine applies it."""
        err = {"type": etype, "message": "x", "traceback": "", "types": [etype]}
        rid = protocol.result_id(req.run_id, req.task, req.attempt)
        self.send(self.event(protocol.TASK_FAILED, req, rid, error=err))
        self.pump()

    def reverted(self, req: TaskRequest) -> None:
        """``req``'s revert handler ran; the engine applies it."""
        rid = protocol.revert_result_id(req.run_id, req.task, req.attempt)
        self.send(self.event(protocol.TASK_REVERTED, req, rid))
        self.pump()

    def control(self, run_id: str, kind: str) -> None:
        """An operator's cancel, pause, resume or retry; the engine applies it."""
        event_id = f"{kind}:{run_id}:{uuid.uuid4().hex}"
        self.send(Event(kind, event_id, run_id, body={"by": "t"}, at_ms=protocol.now_ms()))
        self.pump()

    def one(self) -> TaskRequest:
        [req] = self.requests()
        return req

    def by_task(self) -> dict[str, TaskRequest]:
        return {r.task: r for r in self.requests()}

    def status(self, run_id: str) -> tuple[str, dict[str, str]]:
        """The run's status and each task's."""
        info = self.client.status(run_id)
        return info.status, {n: t.status for n, t in info.tasks.items()}

    def dead_letters(self) -> list[Delivery]:
        """What reached the dead queue since the last call (taken off it)."""
        got = self.dead.poll(0)
        for d in got:
            self.dead.ack(d)
        return got

    def timers(self, run_id: str) -> list[Event]:
        out = []
        for raw in self.store.read_all(run_id, keys.TIMERS).values():
            ev = protocol.decode(raw)
            assert isinstance(ev, Event)
            out.append(ev)
        return out
