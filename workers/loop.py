"""The worker loop: one thread owns the broker connection, a pool runs the tasks.

The connection thread polls for task requests (servicing AMQP heartbeats as it goes), hands
each to a thread pool, publishes each finished task's result event with confirms and only
then acknowledges the request. Task code never touches the connection (py-amqp is not
thread-safe), so a task of any length cannot starve heartbeats.

Here: `Worker` (taking deliveries, dispatching them to the pool, announcing long starts,
publishing results and only then acknowledging); which requests not to run is workers.skip's.
``async def`` tasks go to an event loop thread instead of the pool (workers.aio), with slots
of their own (``async_concurrency``) and the same leases, heartbeats and results.
Long work holds no delivery (G6): the loop leases a task still running after ``ack_after_s``
and a heartbeat thread renews the lease; workers.leases has the rules and the thread. Short
tasks keep their delivery, so a crash hands them back at once.

`run_once` is a single step, so tests drive the loop deterministically; ``burst`` exits once
idle. Shutdown: stop taking requests, finish the ones running and publish their results,
acknowledge, close — anything not finished is handed back by the broker.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from runner import faults, logs, metrics, protocol
from runner.broker import ENGINE_QUEUE, Broker, Delivery, Outgoing, task_queue
from runner.client.tokens import make_token
from runner.config import Config
from runner.define.context import TaskContext
from runner.define.tasks import REGISTRY, Registry
from runner.errors import BrokerError, DecodeError
from runner.protocol import Event, TaskRequest
from runner.store import Store
from workers import task_log
from workers.aio import DEFAULT_ASYNC_CONCURRENCY, EventLoop, run_attempt
from workers.execute import execute
from workers.leases import (
    NO_LEASE_DUE,
    Heartbeats,
    Running,
    due_for_lease,
    leased_event,
    started_event,
    until_next_lease,
)
from workers.presence import Presence
from workers.skip import poisoned, superseded

log = logging.getLogger("ackflow.worker")

# While tasks run and the broker cannot be woken (py-amqp blocks in a socket read), the
# connection thread polls in short slices: a quarter of the time since the last activity,
# from 0.2 ms (a quick task's result goes out at once) up to 2 ms (a long task costs little).
_BUSY_POLL_MIN_S, _BUSY_POLL_MAX_S = 0.0002, 0.002
# A task still running after this long is announced with a task.started event; a quicker one
# is not (its result implies it started), which saves the engine one event per step.
_ANNOUNCE_AFTER_S = 0.05


@dataclass
class _Done:
    running: Running
    result: Event | None  # None: skipped, nothing to report (a failing run's skip reports)
    dead_reason: str = ""  # the worker failed handling it: dead-letter the request with this


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
        store: Store | None = None,
        max_long: int | None = None,
        pool: Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_thread: bool = True,
        async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
    ) -> None:
        """``pool`` runs the tasks (default: a thread pool of ``concurrency + max_long``),
        ``clock`` is the monotonic clock of leases and announcements, and without
        ``heartbeat_thread`` the caller renews leases itself by calling `beat`: together they
        let a caller drive the worker one step at a time (tests/sim). ``async def`` tasks run
        on an event loop instead, ``async_concurrency`` at a time (workers.aio)."""
        if concurrency < 1 or async_concurrency < 1:
            raise ValueError("concurrency and async_concurrency must be at least 1")
        self.config = config
        self.broker = broker
        self.registry = registry or REGISTRY
        self.queues = [task_queue(q) for q in (queues or ["default"])]
        self.concurrency = concurrency
        self.async_concurrency = async_concurrency
        self._aio = EventLoop()  # started by the first async task
        self._async_inflight = 0
        # Long (leased) tasks give their slot back, up to this many at once, so the requests
        # that arrive meanwhile start at once instead of waiting, unacknowledged, behind them.
        self.max_long = 4 * concurrency if max_long is None else max_long
        self._freed = 0
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._pool = pool or ThreadPoolExecutor(
            concurrency + self.max_long, thread_name_prefix="ackflow-task"
        )
        self._clock = clock
        self._heartbeat_thread = heartbeat_thread
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._backlog: list[tuple[Delivery, TaskRequest]] = []
        self._unpublished: list[_Done] = []
        self._inflight = 0
        self._stop = threading.Event()
        self.executed = 0
        self.store = store  # for leases and progress; without one, tasks keep their delivery
        self._running: dict[int, Running] = {}
        self._running_lock = threading.Lock()
        self._beats: Heartbeats | None = None
        self._presence: Presence | None = None  # its record in Redis (`ackflow workers`)
        self._active_at = 0.0  # the last delivery or finished task (see the busy poll)

    def start(self) -> None:
        # consume declares what it consumes, and rides out a connection lost meanwhile (the
        # next poll reconnects): a worker starting while the broker restarts waits for it
        self.broker.consume(self.queues, self.prefetch)
        if self.store is not None and self._beats is None:
            self._presence = Presence(
                self.store,
                self.config,
                self.name,
                self.queues,
                self.concurrency,
                self.registry.names(),
                self.snapshot,
                lambda: [d.queue for d, _ in list(self._backlog)],
                self._clock,
            )
            self._presence.write(self._clock())
            self._beats = Heartbeats(self.store, self.config, self.snapshot, self._presence.beat)
            if self._heartbeat_thread:
                self._beats.start()

    @property
    def prefetch(self) -> int:
        """Deliveries held at once: a slot each, async slots too if async tasks are registered
        (a worker that registers none keeps the small window of its threads)."""
        return self.concurrency + (self.async_concurrency if self.registry.has_async() else 0)

    def beat(self) -> None:
        """One heartbeat round (renew due leases, send progress), for a caller that runs
        without the heartbeat thread."""
        if self._beats is not None:
            self._beats.beat(self._clock())

    @property
    def idle(self) -> bool:
        return not (self._inflight or self._backlog or self._unpublished)

    def run_once(self, timeout_s: float = 1.0) -> int:
        """Publish finished results, take new requests; return how many deliveries arrived."""
        self._finish()
        wait = min(timeout_s, NO_LEASE_DUE)  # what the two waits below come to with none running
        if self._running:  # none dispatched and unsettled: nothing to announce or lease
            self._announce_started()
            self._lease_long_tasks()
            wait = min(timeout_s, self._until_next_lease(), self._until_next_announce())
        if not self.idle and not self.broker.can_wake:
            quiet = self._clock() - self._active_at
            wait = min(wait, max(_BUSY_POLL_MIN_S, min(_BUSY_POLL_MAX_S, quiet / 4)))
        if self._stop.is_set():  # shutting down: service heartbeats, take nothing new
            self.broker.keepalive(wait)
            deliveries = []
        else:
            deliveries = self.broker.poll(wait)
        for d in deliveries:
            self._accept(d)
        self._dispatch()
        if deliveries:
            self._active_at = self._clock()
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
            self._aio.stop()
            if self._beats is not None:
                self._beats.stop(timeout_s=5)
            if self._presence is not None:
                self._presence.write(self._clock(), stopped=True)
            self.broker.close()

    def stop(self) -> None:
        self._stop.set()
        self.broker.wakeup()

    # --- steps -------------------------------------------------------------------------

    def _accept(self, d: Delivery) -> None:
        """Take one delivery into the backlog, or dead-letter it with the reason.

        Whatever goes wrong with this one message, other than the broker failing, costs a
        dead letter, not the worker: an exception let through would end the worker, and
        every worker the broker hands the message to next (H1).
        """
        try:
            self._take(d)
        except BrokerError as e:  # an outage: unacknowledged, the message comes back
            log.warning("could not take message %s (%s); the broker will redeliver it", d.message_id, e)
        except DecodeError as e:
            log.error("dead-lettering message %s from %s: %s", d.message_id, d.queue, e.reason)
            self._reject(d, e.reason, "malformed")
        except Exception as e:
            log.exception("dead-lettering message %s from %s: it could not be taken", d.message_id, d.queue)
            self._reject(d, _worker_error(e), "error")

    def _take(self, d: Delivery) -> None:
        msg = protocol.decode_delivery(d.content_type, d.body, TaskRequest, "a task queue")
        if d.delivery_count:
            metrics.REDELIVERIES.labels("worker").inc()
            if poisoned(self.broker, d, msg, self.config.delivery_limit, self.name):
                metrics.DEAD_LETTERS.labels("worker", "poison").inc()
                return
        self._backlog.append((d, msg))

    def _reject(self, d: Delivery, reason: str, why: str) -> None:
        try:
            self.broker.dead_letter(d, reason)
            metrics.DEAD_LETTERS.labels("worker", why).inc()
        except BrokerError as be:
            log.error("could not dead-letter (%s); the broker will redeliver it", be)

    def _is_async(self, req: TaskRequest) -> bool:
        return req.fn in self.registry and self.registry.get(req.fn).is_async

    def _has_slot(self, is_async: bool) -> bool:
        if is_async:
            return self._async_inflight < self.async_concurrency
        return self._inflight - self._async_inflight - self._freed < self.concurrency

    def _dispatch(self) -> None:
        """Start what the backlog holds, in order, while a slot of its kind is free: threaded
        tasks have ``concurrency`` slots (less those of leased tasks, see ``max_long``), async
        tasks ``async_concurrency``; one kind waiting does not hold up the other."""
        started = []
        waiting: list[tuple[Delivery, TaskRequest]] = []
        for d, req in self._backlog:
            is_async = self._is_async(req)
            if not self._has_slot(is_async):
                waiting.append((d, req))
                continue
            self._inflight += 1
            token = (
                functools.partial(
                    make_token, self.config.secret, self.config.prefix, req.run_id, req.run_created, req.task
                )
                if self.config.secret
                else None
            )
            ctx = TaskContext(req.run_id, req.task, req.attempt, token_maker=token)
            r = Running(d, req, ctx, since=self._clock(), is_async=is_async)
            if d.delivery_count:  # a redelivery: announce it at once, so the history shows it
                started.append(started_event(d, req, self.name))
                r.announced = True
            with self._running_lock:
                self._running[id(r)] = r
            if is_async:
                self._async_inflight += 1
                self._aio.submit(self._execute_async(r))
            else:
                self._pool.submit(self._execute_guarded, r)
        self._backlog = waiting
        if started:
            try:
                self._publish(started)
            except BrokerError as e:  # informational only: the result carries the outcome
                log.warning("could not publish started events: %s", e)

    def _until_next_announce(self) -> float:
        with self._running_lock:
            waiting = [r.since for r in self._running.values() if not (r.announced or r.finished)]
        return max(0.0, min(waiting) + _ANNOUNCE_AFTER_S - self._clock()) if waiting else 3600.0

    def _announce_started(self) -> None:
        """Publish task.started for tasks still running after _ANNOUNCE_AFTER_S."""
        now = self._clock()
        with self._running_lock:
            due = [
                r
                for r in self._running.values()
                if not (r.announced or r.finished) and now - r.since >= _ANNOUNCE_AFTER_S
            ]
        if not due:
            return
        try:
            self._publish([started_event(r.delivery, r.req, self.name) for r in due])
        except BrokerError as e:  # informational only: the result carries the outcome
            log.warning("could not publish started events: %s", e)
            return
        for r in due:
            r.announced = True

    def _execute(self, r: Running) -> None:
        with logs.about(r.req.run_id, r.req.task, r.req.attempt):
            task_log.received(r.req)
            skipped = superseded(self.store, r.req, r.delivery.delivery_count, self.name)
            if skipped is not None:
                task_log.not_started(r.req)
                self._done.put(_Done(r, skipped or None))
            else:
                started = time.perf_counter()
                result = execute(r.req, self.registry, self.name, self.config.max_payload_bytes, r.ctx)
                took_s = time.perf_counter() - started
                metrics.TASK_SECONDS.labels(r.req.fn, result.kind.rpartition(".")[2]).observe(took_s)
                task_log.finished(r.req, result, took_s)
                faults.hit("worker.after_execute")
                self._done.put(_Done(r, result))
        self.broker.wakeup()

    def _execute_guarded(self, r: Running) -> None:
        """`_execute`, and if the worker itself fails there (not the task: `execute` reports
        that as the attempt's failure), have its request dead-lettered; a pool thread's
        exception would otherwise vanish with the request's delivery and slot held forever."""
        try:
            self._execute(r)
        except Exception as e:
            with logs.about(r.req.run_id, r.req.task, r.req.attempt):
                log.exception("dead-lettering request %s: the worker failed handling it", r.req.id)
            self._done.put(_Done(r, None, _worker_error(e)))
            self.broker.wakeup()

    async def _execute_async(self, r: Running) -> None:
        """An async task's `_execute_guarded`, on the event loop (workers.aio)."""
        try:
            task_def = self.registry.get(r.req.fn)
            result = await run_attempt(r, task_def, self.store, self.name, self.config.max_payload_bytes)
            self._done.put(_Done(r, result))
        except Exception as e:  # the worker failed, not the task (`execute_async` reports that)
            with logs.about(r.req.run_id, r.req.task, r.req.attempt):
                log.exception("dead-lettering request %s: the worker failed handling it", r.req.id)
            self._done.put(_Done(r, None, _worker_error(e)))
        finally:
            self.broker.wakeup()

    def _publish(self, messages: list[Outgoing]) -> None:
        started = time.perf_counter()
        self.broker.publish(messages)
        metrics.CONFIRM_SECONDS.labels("worker").observe(time.perf_counter() - started)
        metrics.PUBLISHED.labels("worker").inc(len(messages))

    # --- long tasks: leases (workers.leases) ---------------------------------------------

    def snapshot(self) -> list[Running]:
        """The tasks dispatched and not yet settled (their bodies may have returned)."""
        with self._running_lock:
            return list(self._running.values())

    def _until_next_lease(self) -> float:
        if self.store is None:
            return 3600.0
        return until_next_lease(self.snapshot(), self.config.ack_after_s, self._clock())

    def _lease_long_tasks(self) -> None:
        """Give back the deliveries of tasks running longer than ``ack_after_s`` (G6)."""
        if self.store is None:
            return
        due = due_for_lease(self.snapshot(), self.config.ack_after_s, self._clock())
        if not due:
            return
        try:  # the lease is durable before the delivery goes
            self._publish([leased_event(r, self.name) for r in due])
        except BrokerError as e:
            log.warning("could not publish lease events (%s); the tasks keep their deliveries", e)
            return
        for r in due:
            self.broker.ack(r.delivery)
            r.leased = True
            if not r.is_async and self._freed < self.max_long:  # async slots stay bounded
                r.freed = True
                self._freed += 1
            log.info(
                "task %s of run %s runs long: delivery acknowledged, lease taken", r.req.task, r.req.run_id
            )

    def _finish(self) -> None:
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                break
            if done.running.finished:  # reported twice (it failed after reporting): once counts
                continue
            done.running.finished = True
            self._active_at = self._clock()
            self._inflight -= 1
            if done.running.is_async:
                self._async_inflight -= 1
            if done.running.freed:
                self._freed -= 1
            self.executed += 1
            self._unpublished.append(done)
        if not self._unpublished:
            return
        batch = self._unpublished
        try:
            self._publish(
                [Outgoing(ENGINE_QUEUE, r.result.id, protocol.encode(r.result)) for r in batch if r.result]
            )
        except BrokerError as e:
            log.warning("could not publish %d results (%s); retrying", len(batch), e)
            return
        faults.hit("worker.after_publish")
        self._unpublished = []
        faults.hit("worker.before_ack")
        with self._running_lock:
            for r in batch:
                self._running.pop(id(r.running), None)
        for r in batch:
            if r.dead_reason:
                if r.running.leased:  # its delivery is gone: the lease's expiry retries it
                    log.error("request %s failed in the worker: %s", r.running.req.id, r.dead_reason)
                else:
                    self._reject(r.running.delivery, r.dead_reason, "error")
            elif not r.running.leased:
                self.broker.ack(r.running.delivery)


def _worker_error(e: Exception) -> str:
    """A dead letter's reason for a failure of the worker itself (kept short: it is a header)."""
    reason = f"worker error: {type(e).__name__}: {e}"
    return reason if len(reason) <= 500 else reason[:500] + "..."
