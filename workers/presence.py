"""The worker's own heartbeat record (`runner.presence`): who it is, what it consumes and runs.

`Presence.beat` is called on each round of the heartbeat thread (workers.leases) and writes
the record every ``worker_beat_s``; the worker writes it once more when it starts and when it
stops cleanly (``stopped``). A failed write costs a warning, never the worker: the record is
for operators, and runs do not depend on it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from runner import protocol
from runner.config import Config
from runner.errors import StoreError
from runner.presence import RunningTask, WorkerRecord, ackflow_version
from runner.store import Store
from workers.leases import Running

log = logging.getLogger("ackflow.worker")

TASK_QUEUE_PREFIX = "task."


class Presence:
    """Writes one worker's record, at most every ``worker_beat_s`` (monotonic ``clock``)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        worker_id: str,
        queues: list[str],
        concurrency: int,
        tasks: list[str],
        running: Callable[[], list[Running]],
        waiting: Callable[[], list[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``queues`` are logical (``task.<name>``); ``running`` snapshots the tasks the
        worker runs, ``waiting`` the queues of the deliveries it holds but has not started."""
        self.store = store
        self.config = config
        self._record = WorkerRecord(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=[q.removeprefix(TASK_QUEUE_PREFIX) for q in queues],
            concurrency=concurrency,
            tasks=sorted(tasks),
            started_ms=protocol.now_ms(),
            version=ackflow_version(),
            beat_s=config.worker_beat_s,
        )
        self._running = running
        self._waiting = waiting
        self._clock = clock
        self._next = 0.0  # monotonic time of the next write
        self._failing = False
        self._recorded = False

    def beat(self, now: float) -> None:
        """Write the record if it is due."""
        if now >= self._next:
            self.write(now)

    def write(self, now: float, stopped: bool = False) -> None:
        self._next = now + self.config.worker_beat_s
        now_ms = protocol.now_ms()
        running: list[RunningTask] = []
        unacked: dict[str, int] = {}
        for r in self._running():
            if r.finished:
                continue
            since_ms = now_ms - int((now - r.since) * 1000)
            running.append(RunningTask(r.req.run_id, r.req.task, r.req.attempt, since_ms))
            if not r.leased:
                unacked[r.delivery.queue] = unacked.get(r.delivery.queue, 0) + 1
        for q in self._waiting():
            unacked[q] = unacked.get(q, 0) + 1
        record = replace(self._record, running=running, unacked=unacked, stopped_ms=now_ms if stopped else 0)
        try:
            self.store.beat_worker(record.id, record.encode(), now_ms, self.config.worker_keep_s)
        except StoreError as e:
            if not self._failing:
                log.warning("could not record this worker's heartbeat in Redis: %s", e)
            self._failing = True
            return
        if self._failing:
            log.info("this worker's heartbeat is recorded in Redis again")
        elif not self._recorded:
            log.info("worker %s recorded in Redis (see ackflow workers)", record.id)
        self._failing = False
        self._recorded = True


def running_by_queue(queues: Iterable[str], running: Iterable[Running]) -> dict[str, int]:
    """Task bodies running now by task queue (logical, ``task.<name>``), 0 for each queue
    consumed (``queues``; a ``*`` prefix pattern only once a task of it runs)."""
    out = {q: 0 for q in queues if not q.endswith("*")}
    for r in running:
        if not r.finished:
            out[r.delivery.queue] = out.get(r.delivery.queue, 0) + 1
    return out
