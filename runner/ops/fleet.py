"""What operators see of the fleet: ``ackflow workers`` and ``ackflow queues``, the dashboard's
Workers and Queues pages, the queue metrics, and the hint when a run waits on a queue nobody
consumes.

The queues shown are the engine and dead queues and every task queue that a run submitted
within the retention time uses (`Store.note_queues`) or that a worker heard from recently
consumes. The broker counts ready messages and consumers (`QueueInfo.queue_stats`); RabbitMQ
tells no client how many deliveries are unacknowledged, so for a task queue that number is what
the live workers say they hold (runner.presence); for the engine queue it is unknown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runner import logs, protocol, states
from runner.broker import DEAD_QUEUE, ENGINE_QUEUE, QueueInfo, task_queue
from runner.client import Client, RunInfo
from runner.config import Config
from runner.errors import AckflowError
from runner.presence import LIVE, LOST, STOPPED, WorkerRecord, list_workers
from runner.store import Store

log = logging.getLogger("ackflow.metrics")


@dataclass(frozen=True)
class QueueRow:
    queue: str  # logical: engine, dead, task.<name>
    name: str  # on the broker
    exists: bool
    ready: int = 0
    consumers: int = 0
    unacked: int | None = None  # deliveries live workers hold; None: not known (engine, dead)
    workers: list[str] = field(default_factory=list)  # live workers that consume it

    @property
    def unconsumed(self) -> bool:
        """Messages wait in it and nobody consumes it (the dead queue is never consumed)."""
        return self.queue != DEAD_QUEUE and self.ready > 0 and self.consumers == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "name": self.name,
            "exists": self.exists,
            "ready": self.ready,
            "unacked": self.unacked,
            "consumers": self.consumers,
            "unconsumed": self.unconsumed,
            "workers": self.workers,
        }


def workers(store: Store, config: Config, now_ms: int | None = None) -> list[WorkerRecord]:
    """Workers live, lost (silent for three beats) or stopped, heard from within
    ``worker_keep_s``."""
    return list_workers(store, protocol.now_ms() if now_ms is None else now_ms, config.worker_keep_s)


def queue_rows(store: Store, broker: QueueInfo, config: Config, now_ms: int | None = None) -> list[QueueRow]:
    """Every known ackflow queue with the broker's counts: engine, dead, then task queues by name."""
    now_ms = protocol.now_ms() if now_ms is None else now_ms
    fleet = workers(store, config, now_ms)
    live = [w for w in fleet if w.state(now_ms) == LIVE]
    task_queues = set(store.noted_queues(now_ms - config.retention_s * 1000))
    task_queues.update(q for w in fleet for q in w.queues if not q.endswith("*"))  # "*": all (local mode)
    rows = []
    for logical in [ENGINE_QUEUE, DEAD_QUEUE, *(task_queue(q) for q in sorted(task_queues))]:
        stats = broker.queue_stats(logical)
        is_task = logical.startswith(task_queue(""))
        serving = [w.id for w in live if is_task and any(_serves(q, logical) for q in w.queues)]
        unacked = sum(w.unacked.get(logical, 0) for w in live) if is_task else None
        if stats is None:
            rows.append(QueueRow(logical, broker.physical(logical), False, unacked=unacked, workers=serving))
        else:
            rows.append(
                QueueRow(
                    logical,
                    broker.physical(logical),
                    True,
                    stats.ready,
                    stats.consumers,
                    unacked,
                    serving,
                )
            )
    return rows


def _serves(queue: str, logical: str) -> bool:
    """Whether a worker's queue (as named on ``-Q``; ``x*`` is a prefix) is this task queue."""
    name = logical.removeprefix(task_queue(""))
    return queue == name or (queue.endswith("*") and name.startswith(queue[:-1]))


@dataclass(frozen=True)
class Unconsumed:
    """A run's task (or, for a run no engine has started, the run) waiting on a queue nobody
    consumes."""

    task: str  # "" for the run itself, waiting on the engine queue
    queue: str  # logical
    name: str  # on the broker
    ready: int

    def describe(self) -> str:
        if not self.task:
            return (
                f"waits on the engine queue {self.name} ({self.ready} ready), which no engine consumes: "
                "start one (ackflow engine)"
            )
        q = self.queue.removeprefix(task_queue(""))
        return (
            f"task {self.task} waits on queue {q!r} ({self.name}, {self.ready} ready), which no worker "
            f"consumes: start one (ackflow worker MODULE -Q {q})"
        )

    def as_json(self) -> dict[str, Any]:
        return {"task": self.task or None, "queue": self.queue, "name": self.name, "ready": self.ready}


def waiting_unconsumed(client: Client, info: RunInfo) -> list[Unconsumed]:
    """What of an active run waits on a queue that has no consumer: a task scheduled (or
    running with its request back in the queue) on a task queue, or the run not yet started
    on the engine queue. Asks the broker, so it is empty if the broker cannot be reached."""
    if info.done:
        return []
    active = {
        name: t.status for name, t in info.tasks.items() if t.status in (states.SCHEDULED, states.RUNNING)
    }
    if info.status != states.PENDING and not active:
        return []
    try:
        broker = client.broker
        if not isinstance(broker, QueueInfo):
            return []
        out = []
        if info.status == states.PENDING:
            stats = broker.queue_stats(ENGINE_QUEUE)
            if stats is not None and stats.consumers == 0:
                out.append(Unconsumed("", ENGINE_QUEUE, broker.physical(ENGINE_QUEUE), stats.ready))
        specs = client.specs(info.run_id) if active else {}
        seen: dict[str, Any] = {}
        for name, status in sorted(active.items()):
            spec = specs.get(name)
            if spec is None:
                continue
            logical = task_queue(spec.queue)
            if logical not in seen:
                seen[logical] = broker.queue_stats(logical)
            stats = seen[logical]
            if stats is None or stats.consumers:
                continue
            if status == states.SCHEDULED or stats.ready:
                out.append(Unconsumed(name, logical, broker.physical(logical), stats.ready))
        return out
    except AckflowError:  # no broker: status still shows what Redis holds
        return []


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(
            "ackflow_queue_messages", "Messages in each ackflow queue, by state", labels=["queue", "state"]
        ),
        GaugeMetricFamily("ackflow_queue_consumers", "Consumers of each ackflow queue", labels=["queue"]),
        GaugeMetricFamily(
            "ackflow_queue_unconsumed",
            "1 if messages wait in the queue and nobody consumes it",
            labels=["queue"],
        ),
        GaugeMetricFamily("ackflow_workers", "Workers heard from recently, by state", labels=["state"]),
    )


class FleetCollector(Collector):
    """The queue and worker gauges, read at each scrape: ``ackflow_queue_messages{queue,state}``,
    ``ackflow_queue_consumers{queue}``, ``ackflow_queue_unconsumed{queue}`` and
    ``ackflow_workers{state}``. Its broker connection is its own, opened on the first scrape and
    again after a failure; scrapes take turns on it."""

    def __init__(self, config: Config, store: Store, open_broker: Callable[[], Any]) -> None:
        self._config = config
        self._store = store
        self._open_broker = open_broker
        self._broker: Any = None
        self._lock = threading.Lock()

    def _rows(self) -> list[QueueRow]:
        if self._broker is None:
            self._broker = self._open_broker()
        try:
            return queue_rows(self._store, self._broker, self._config)
        except Exception:
            broker, self._broker = self._broker, None  # the next scrape starts afresh
            broker.close()
            raise

    def describe(self) -> list[GaugeMetricFamily]:
        """The families without samples: registering reads neither Redis nor the broker."""
        return list(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        messages, consumers, unconsumed, fleet = _families()
        with self._lock:
            try:
                rows = self._rows()
            except Exception as e:  # noqa: BLE001 - a scrape during an outage shows what it can
                log.warning("queue metrics not read: %s", logs.scrub(str(e)))
                rows = []
            try:
                recs = workers(self._store, self._config)
            except AckflowError:
                recs = None
        now = protocol.now_ms()
        for r in rows:
            if not r.exists:
                continue
            messages.add_metric([r.queue, "ready"], r.ready)
            if r.unacked is not None:
                messages.add_metric([r.queue, "unacked"], r.unacked)
            consumers.add_metric([r.queue], r.consumers)
            if r.queue != DEAD_QUEUE:
                unconsumed.add_metric([r.queue], 1 if r.unconsumed else 0)
        yield messages
        yield consumers
        yield unconsumed
        if recs is not None:
            for state in (LIVE, LOST, STOPPED):
                fleet.add_metric([state], sum(1 for w in recs if w.state(now) == state))
            yield fleet

    def close(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None
