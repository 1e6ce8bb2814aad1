"""Long tasks hold no delivery (G6): leases, and the heartbeats that renew them.

A task still running after ``ack_after_s`` gets a lease: the worker's loop publishes
``task.leased`` (confirmed) and only then acknowledges the request. From then on the
heartbeat thread renews the lease in Redis every ``lease_s / 3``. If the worker dies or
freezes, the lease expires and the engine starts a new attempt; the old attempt's late result
is fenced. The same heartbeats carry every running task's progress and tell it when its run
was cancelled or vanished.

Here: `Running` (the worker's record of one dispatched request), which tasks are due a lease
and when the next one is (`due_for_lease`, `until_next_lease`), the events that announce a
task's start and lease (`started_event`, `leased_event`), and the heartbeat thread
(`Heartbeats`), which also cancels an async task's coroutine when its run is cancelled. The loop (workers.loop) owns the
connection, so it publishes, acknowledges and counts slots; nothing here touches the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runner import protocol
from runner.broker import ENGINE_QUEUE, Delivery, Outgoing
from runner.config import Config
from runner.decide.records import TaskProgress
from runner.define.context import TaskContext
from runner.errors import StoreError
from runner.protocol import CREATED_FIELD, Event, TaskRequest
from runner.states import CANCELLED
from runner.store import Store

log = logging.getLogger("ackflow.worker")

PROGRESS_EVERY_S = 0.25  # how often the heartbeat thread looks for progress to send
NO_LEASE_DUE = 3600.0  # the wait when no task can come due for a lease


@dataclass
class Running:
    """One dispatched request, from dispatch until its delivery is settled."""

    delivery: Delivery
    req: TaskRequest
    ctx: TaskContext
    since: float = field(default_factory=time.monotonic)
    leased: bool = False  # its delivery was acknowledged early; a lease covers it
    freed: bool = False  # it gave its concurrency slot back (see Worker.max_long)
    finished: bool = False  # its body returned (its result may still be unpublished)
    announced: bool = False  # its task.started event was published
    lease_seen: bool = False  # a heartbeat found the engine's lease for this attempt
    next_beat: float = 0.0
    sent_version: int = 0  # the progress version last sent
    is_async: bool = False  # an async def task, run on the worker's event loop
    # Cancels an async task's coroutine (set once it runs): the heartbeats call it when the
    # run is cancelled or the attempt superseded. A thread cannot be cancelled: None.
    cancel: Callable[[], None] | None = field(default=None, repr=False)

    def tell_to_stop(self) -> None:
        """The run was cancelled or the attempt superseded: cancel an async task's coroutine;
        a threaded task learns it from ``cancel_requested``."""
        if self.cancel is not None:
            self.cancel()


def until_next_lease(running: Iterable[Running], ack_after_s: float, now: float) -> float:
    """Seconds until the first running, unleased task comes due for a lease."""
    waiting = [r.since for r in running if not r.leased and not r.finished]
    if not waiting:
        return NO_LEASE_DUE
    return max(0.0, min(waiting) + ack_after_s - now)


def due_for_lease(running: Iterable[Running], ack_after_s: float, now: float) -> list[Running]:
    """The tasks running longer than ``ack_after_s`` that hold their delivery still."""
    return [r for r in running if not (r.leased or r.finished) and now - r.since >= ack_after_s]


def leased_event(r: Running, worker: str) -> Outgoing:
    """The ``task.leased`` event; one per delivery, so a redelivered request's lease is new.
    A revert handler's lease says so (``mode``): the engine leases the revert, not the body."""
    req = r.req
    count = r.delivery.delivery_count
    body: dict[str, object] = {"worker": worker, CREATED_FIELD: req.run_created}
    if req.mode == protocol.MODE_REVERT:
        eid = protocol.revert_leased_id(req.id, count)
        body["mode"] = protocol.MODE_REVERT
    else:
        eid = protocol.leased_id(req.run_id, req.task, req.attempt) + f":{count}"
    event = Event(
        kind=protocol.TASK_LEASED,
        id=eid,
        run_id=req.run_id,
        task=req.task,
        attempt=req.attempt,
        at_ms=protocol.now_ms(),
        body=body,
    )
    return Outgoing(ENGINE_QUEUE, event.id, protocol.encode(event))


def started_event(d: Delivery, req: TaskRequest, worker: str) -> Outgoing:
    """The ``task.started`` event; each redelivery is a distinct event, so the run's history
    shows it."""
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
        body={"worker": worker, "delivery": d.delivery_count, CREATED_FIELD: req.run_created},
    )
    return Outgoing(ENGINE_QUEUE, event_id, protocol.encode(event))


class Heartbeats:
    """The heartbeat thread: renews the leases of long tasks and sends progress, off the
    connection's thread (py-amqp is not thread-safe; Redis calls are)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        running: Callable[[], list[Running]],
        presence: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.running = running  # a snapshot of the worker's running tasks, taken under its lock
        self.presence = presence  # writes the worker's own record when due (workers.presence)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ackflow-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY_S):
            self.beat(time.monotonic())

    def beat(self, now: float) -> None:
        """One round: the worker's record if due, and a heartbeat for each task whose lease is
        due or whose progress changed."""
        if self.presence is not None:
            self.presence(now)
        every = max(0.05, self.config.lease_s / 3)
        for r in self.running():
            with r.ctx.live.lock:
                version, progress = r.ctx.live.version, r.ctx.live.progress
            renew = r.leased and now >= r.next_beat
            if not renew and version == r.sent_version:
                continue
            until = protocol.now_ms() + int(self.config.lease_s * 1000) if renew else 0
            packed = None
            if version != r.sent_version and progress is not None:
                frac, msg = progress
                packed = TaskProgress(r.req.attempt, frac, msg, protocol.now_ms()).encode()
            try:
                beat = self.store.heartbeat(r.req.run_id, r.req.task, r.req.attempt, until, packed)
            except StoreError as e:
                log.warning("heartbeat for %s failed: %s", r.req.task, e)
                continue
            r.sent_version = version
            if renew:
                r.next_beat = now + every
                if beat.leased:
                    r.lease_seen = True
                elif r.lease_seen and not r.ctx.live.fenced:
                    r.ctx.live.fenced = True
                    log.warning(
                        "task %s attempt %d lost its lease to a newer attempt", r.req.task, r.req.attempt
                    )
                    r.tell_to_stop()
            if beat.run_status in (CANCELLED, None) and not r.ctx.live.cancelled:
                r.ctx.live.cancelled = True
                if beat.run_status is None:
                    # An active run never expires: its state vanished from Redis (a flush,
                    # a failover, an eviction). The engine counts and reports the loss.
                    log.warning(
                        "run %s lost: its state vanished from Redis while task %s ran; told the task to stop",
                        r.req.run_id,
                        r.req.task,
                    )
                else:
                    log.info("run %s was cancelled; told task %s", r.req.run_id, r.req.task)
                r.tell_to_stop()
