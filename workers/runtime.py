"""The worker loop: one thread owns the broker connection, a pool runs the tasks.

The connection thread polls for task requests (servicing AMQP heartbeats as it goes), hands
each to a thread pool, publishes each finished task's result event with confirms and only
then acknowledges the request. Task code never touches the connection (py-amqp is not
thread-safe), so a task of any length cannot starve heartbeats.

`run_once` is a single step, so tests drive the loop deterministically; ``burst`` exits once
idle. Shutdown: stop taking requests, finish the ones running and publish their results,
acknowledge, close — anything not finished is handed back by the broker.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from runner import faults, protocol
from runner.broker import ENGINE_QUEUE, Broker, Delivery, Outgoing, task_queue
from runner.config import Config
from runner.errors import BrokerError, DecodeError
from runner.protocol import CONTENT_TYPE, Event, TaskRequest
from runner.tasks import REGISTRY, Registry
from workers.execute import execute, poison_failure

log = logging.getLogger("ackflow.worker")

_BUSY_POLL_S = 0.002  # poll interval while tasks run, when the broker cannot be woken


@dataclass
class _Done:
    delivery: Delivery
    result: Event


class Worker:
    """Executes task requests from the given task queues, ``concurrency`` at a time."""

    def __init__(
        self,
        config: Config,
        broker: Broker,
        registry: Registry | None = None,
        queues: list[str] | None = None,
        concurrency: int = 1,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.config = config
        self.broker = broker
        self.registry = registry or REGISTRY
        self.queues = [task_queue(q) for q in (queues or ["default"])]
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="ackflow-task")
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._backlog: list[tuple[Delivery, TaskRequest]] = []
        self._unpublished: list[_Done] = []
        self._inflight = 0
        self._stop = threading.Event()
        self.executed = 0

    def start(self) -> None:
        self.broker.declare(self.queues)
        self.broker.consume(self.queues, self.concurrency)

    @property
    def idle(self) -> bool:
        return not (self._inflight or self._backlog or self._unpublished)

    def run_once(self, timeout_s: float = 1.0) -> int:
        """Publish finished results, take new requests; return how many deliveries arrived."""
        self._finish()
        wait = timeout_s
        if not self.idle and not self.broker.can_wake:
            wait = min(timeout_s, _BUSY_POLL_S)
        if self._stop.is_set():  # shutting down: service heartbeats, take nothing new
            self.broker.keepalive(wait)
            deliveries = []
        else:
            deliveries = self.broker.poll(wait)
        for d in deliveries:
            self._accept(d)
        self._dispatch()
        return len(deliveries)

    def run(self, burst: bool = False) -> None:
        """Serve until `stop`, then drain in-flight work; with ``burst``, return once idle."""
        self.start()
        try:
            while not self._stop.is_set():
                n = self.run_once(0.2 if burst else 1.0)
                if burst and n == 0 and self.idle:
                    return
            while not self.idle:  # graceful shutdown: finish what runs, hand back the rest
                self._backlog.clear()
                self.run_once(0.05)
        finally:
            self._pool.shutdown(wait=True)
            self.broker.close()

    def stop(self) -> None:
        self._stop.set()
        self.broker.wakeup()

    # --- steps -------------------------------------------------------------------------

    def _accept(self, d: Delivery) -> None:
        try:
            if d.content_type and d.content_type != CONTENT_TYPE:
                raise DecodeError(f"content type {d.content_type!r} is not {CONTENT_TYPE}")
            msg = protocol.decode(d.body)
            if not isinstance(msg, TaskRequest):
                raise DecodeError(f"a task queue takes task requests, not {msg.kind}")
        except DecodeError as e:
            log.error("dead-lettering message %s from %s: %s", d.message_id, d.queue, e.reason)
            try:
                self.broker.dead_letter(d, e.reason)
            except BrokerError as be:
                log.error("could not dead-letter (%s); the broker will redeliver it", be)
            return
        if d.delivery_count and self._is_poison(d, msg):
            return
        self._backlog.append((d, msg))

    def _dispatch(self) -> None:
        started = []
        while self._backlog and self._inflight < self.concurrency:
            d, req = self._backlog.pop(0)
            self._inflight += 1
            started.append(self._started(d, req))
            self._pool.submit(self._execute, d, req)
        if started:
            try:
                self.broker.publish(started)
            except BrokerError as e:  # informational only: the result carries the outcome
                log.warning("could not publish started events: %s", e)

    def _started(self, d: Delivery, req: TaskRequest) -> Outgoing:
        """The "started" event; each redelivery is a distinct event, so the run's history shows it."""
        event_id = protocol.started_id(req.run_id, req.task, req.attempt)
        if d.delivery_count:
            event_id += f":{d.delivery_count}"
        event = Event(
            kind=protocol.TASK_STARTED,
            id=event_id,
            run_id=req.run_id,
            task=req.task,
            attempt=req.attempt,
            at_ms=protocol.now_ms(),
            body={"worker": self.name, "delivery": d.delivery_count},
        )
        return Outgoing(ENGINE_QUEUE, event_id, protocol.encode(event))

    def _is_poison(self, d: Delivery, req: TaskRequest) -> bool:
        """A request delivered `delivery_limit` times, each ending with its worker gone (G5).

        It is not run again: its attempt fails with the reason and it goes to the dead queue.
        """
        if d.delivery_count < self.config.delivery_limit - 1:
            return False
        reason = (
            f"poison: task request delivered {d.delivery_count + 1} times and its worker died "
            f"each time (limit {self.config.delivery_limit})"
        )
        log.error("%s: %s", req.id, reason)
        failed = poison_failure(req, self.name, reason)
        try:
            self.broker.publish([Outgoing(ENGINE_QUEUE, failed.id, protocol.encode(failed))])
            self.broker.dead_letter(d, reason)
        except BrokerError as e:
            log.error("could not dead-letter poison request %s (%s)", req.id, e)
        return True

    def _execute(self, d: Delivery, req: TaskRequest) -> None:
        result = execute(req, self.registry, self.name, self.config.max_payload_bytes)
        faults.hit("worker.after_execute")
        self._done.put(_Done(d, result))
        self.broker.wakeup()

    def _finish(self) -> None:
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                break
            self._inflight -= 1
            self.executed += 1
            self._unpublished.append(done)
        if not self._unpublished:
            return
        batch = self._unpublished
        try:
            self.broker.publish(
                [Outgoing(ENGINE_QUEUE, r.result.id, protocol.encode(r.result)) for r in batch]
            )
        except BrokerError as e:
            log.warning("could not publish %d results (%s); retrying", len(batch), e)
            return
        faults.hit("worker.after_publish")
        self._unpublished = []
        faults.hit("worker.before_ack")
        for r in batch:
            self.broker.ack(r.delivery)
