"""The engine `Harness`: an engine, a client and a task queue on the in-memory store and the
local broker, stepped by hand (no threads, no network). Unit tests drive flows through it by
reading task requests and sending results."""

from __future__ import annotations

from runner import protocol
from runner.broker import ENGINE_QUEUE, Outgoing, task_queue
from runner.broker.local import LocalHub
from runner.client import Client
from runner.config import Config
from runner.engine import Engine
from runner.protocol import Event, TaskRequest
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
