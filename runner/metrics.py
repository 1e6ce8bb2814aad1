"""Prometheus metrics for engines and workers (``--metrics-port``), on a registry of our own.

Names (all prefixed ``ackflow_``):

- ``events_total{kind,outcome}`` events an engine handled: outcome applied | duplicate |
  unknown_run | lost_run | dead_letter
- ``commit_conflicts_total`` commits re-read and re-decided because a guard moved
- ``redeliveries_total{role}`` deliveries the broker marked redelivered
- ``fenced_results_total`` results refused because their attempt was not current
- ``dead_letters_total{role,reason}`` messages dead-lettered: malformed | poison | error
- ``published_total{role}`` messages published and confirmed
- ``publish_confirm_seconds{role}`` time to publish a batch and receive every confirm
- ``timers_fired_total`` timers an engine published as events
- ``schedule_firings_total{outcome}`` scheduled times an engine fired: started (its run
  submitted) | skipped (overlap skip: the previous run still ran) | failed (no run could start:
  the note says why); firings that catch-up skipped are not counted
- ``task_duration_seconds{task,outcome}`` task bodies, as the worker timed them
- ``run_duration_seconds{flow,status}`` creation to finish of runs, when an engine finishes
  them; ``flow`` is the flow's name, so keep flow names static (not one per date or customer):
  past ``MAX_FLOW_LABELS`` distinct names a process reports further flows as ``flow="other"``
- ``runs{status}`` runs in Redis by status (read from the status indexes at each scrape)
- ``store_durable`` 1 if Redis is known durable (AOF, appendfsync always, noeviction), else 0
  (not durable, or CONFIG could not be read); alert on ``ackflow_store_durable == 0``
- ``store_settings_info{appendonly,appendfsync,maxmemory_policy}`` 1, with what was read
  ("unknown" where CONFIG could not be read)
- ``build_info{version,python,kombu,redis}`` 1, with the versions this process runs
- ``process_*`` (CPU, memory, open files, start time; on Linux), ``python_info`` and
  ``python_gc_*``: prometheus_client's process, platform and GC collectors
- on workers: ``tasks_running{queue}`` task bodies running now by task queue (the queue as in
  ``queue_messages``), ``worker_slots`` tasks the worker runs at once (threads, and async
  slots if it has async tasks): ``sum(tasks_running) / sum(worker_slots)`` is the fleet's use
- ``runs_lost_total`` runs whose state vanished from Redis while active (each counted once)
- ``store_data_losses_total`` times the deployment epoch vanished: Redis lost its data
- on engines and ``serve`` (runner.ops.fleet, read at each scrape):
  ``queue_messages{queue,state}`` ready | unacked (held by live workers) per ackflow queue,
  ``queue_consumers{queue}``, ``queue_unconsumed{queue}`` 1 while messages wait in a queue
  nobody consumes, ``workers{state}`` live | lost | stopped
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    start_http_server,
)
from prometheus_client import Counter as _Counter
from prometheus_client import Histogram as _Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runner import states

if TYPE_CHECKING:
    from runner.store import Store

REGISTRY = CollectorRegistry(auto_describe=True)
# The process, platform and GC collectors that prometheus_client puts on its default registry.
for _c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_c)


class _CachedLabels:
    """`labels` remembers its children: the hot paths label a few metrics per event, and
    prometheus_client's lookup (a lock and validation) costs more than the increment."""

    def labels(self, *values: str) -> Any:
        cache: dict[tuple[str, ...], Any] = self.__dict__.setdefault("_children_by_values", {})
        child = cache.get(values)
        if child is None:
            child = cache[values] = super().labels(*values)  # type: ignore[misc]
        return child


class Counter(_CachedLabels, _Counter):  # type: ignore[misc]  # same call, cached
    pass


class Histogram(_CachedLabels, _Histogram):  # type: ignore[misc]  # same call, cached
    pass


EVENTS = Counter("ackflow_events", "Events handled by engines", ["kind", "outcome"], registry=REGISTRY)
CONFLICTS = Counter("ackflow_commit_conflicts", "Commits retried after a guard moved", registry=REGISTRY)
REDELIVERIES = Counter("ackflow_redeliveries", "Deliveries marked redelivered", ["role"], registry=REGISTRY)
FENCED = Counter("ackflow_fenced_results", "Results refused: not the current attempt", registry=REGISTRY)
DEAD_LETTERS = Counter(
    "ackflow_dead_letters", "Messages dead-lettered", ["role", "reason"], registry=REGISTRY
)
PUBLISHED = Counter("ackflow_published", "Messages published and confirmed", ["role"], registry=REGISTRY)
CONFIRM_SECONDS = Histogram(
    "ackflow_publish_confirm_seconds",
    "Publishing a batch until every confirm arrived",
    ["role"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=REGISTRY,
)
TIMERS_FIRED = Counter("ackflow_timers_fired", "Timers published as timer.fired events", registry=REGISTRY)
SCHEDULE_FIRINGS = Counter(
    "ackflow_schedule_firings", "Scheduled times fired, by outcome", ["outcome"], registry=REGISTRY
)
TASK_SECONDS = Histogram(
    "ackflow_task_duration_seconds",
    "Task bodies, as their worker timed them",
    ["task", "outcome"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800),
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "ackflow_run_duration_seconds",
    "Runs from creation to finish",
    ["flow", "status"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 86400),
    registry=REGISTRY,
)
MAX_FLOW_LABELS = 200  # distinct flow label values per process; more are counted as "other"
_flow_labels: set[str] = set()


def flow_label(flow: str) -> str:
    """The ``flow`` label for a run of this flow: its name, bounded in number per process."""
    if flow in _flow_labels:
        return flow
    if not flow or len(_flow_labels) >= MAX_FLOW_LABELS:
        return "other"
    _flow_labels.add(flow)
    return flow


def observe_run(flow: str, status: str, seconds: float) -> None:
    """A run finished with ``status`` after ``seconds`` since it was created."""
    RUN_SECONDS.labels(flow_label(flow), status).observe(seconds)


DEAD_LETTER_REASONS = ("malformed", "poison", "error")


def show_role(role: str) -> None:
    """Show the series of this process's role (engine | worker) at 0 before anything happens,
    so that rates and alerts see them from the first scrape (Prometheus shows no series for a
    label value never used)."""
    REDELIVERIES.labels(role)
    PUBLISHED.labels(role)
    CONFIRM_SECONDS.labels(role)
    for reason in DEAD_LETTER_REASONS:
        DEAD_LETTERS.labels(role, reason)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "unknown"


BUILD_INFO = Gauge(
    "ackflow_build_info",
    "1, with the versions of ackflow, Python and the client libraries this process runs",
    ["version", "python", "kombu", "redis"],
    registry=REGISTRY,
)
BUILD_INFO.labels(_version("ackflow"), platform.python_version(), _version("kombu"), _version("redis")).set(1)

RUNS_LOST = Counter(
    "ackflow_runs_lost", "Runs whose state vanished from Redis while active", registry=REGISTRY
)
STORE_DATA_LOSSES = Counter(
    "ackflow_store_data_losses", "Times the deployment epoch vanished: Redis lost its data", registry=REGISTRY
)
# Not registered until a process checks its store (engines, serve): a worker's or local
# mode's /metrics must not show a 0 that a "not durable" alert would fire on.
STORE_DURABLE = Gauge(
    "ackflow_store_durable", "1 if Redis is known durable, 0 if not or unknown", registry=None
)
STORE_SETTINGS = Gauge(
    "ackflow_store_settings_info",
    "Redis persistence settings as last read (1 for the current ones)",
    ["appendonly", "appendfsync", "maxmemory_policy"],
    registry=None,
)
_durability_shown = False


def set_store_durability(durable: bool, settings: Mapping[str, str]) -> None:
    """Show the last durability verdict: the gauge, and one info series for the settings."""
    global _durability_shown
    STORE_DURABLE.set(1 if durable else 0)
    STORE_SETTINGS.clear()
    STORE_SETTINGS.labels(
        settings.get("appendonly", "unknown"),
        settings.get("appendfsync", "unknown"),
        settings.get("maxmemory-policy", "unknown"),
    ).set(1)
    if not _durability_shown:
        _durability_shown = True
        REGISTRY.register(STORE_DURABLE)
        REGISTRY.register(STORE_SETTINGS)


class RunsByStatus(Collector):
    """``ackflow_runs{status}``: ZCARD of each status index at scrape time (cheap)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("ackflow_runs", "Runs in Redis by status", labels=["status"])
        for status in states.RUN_STATES:
            try:
                g.add_metric([status], self._store.count_runs(status))
            except Exception:  # noqa: BLE001 - a scrape during an outage shows what it can
                continue
        yield g


def count_runs(store: Store) -> None:
    """Show ``ackflow_runs{status}``, read from ``store`` at each scrape (once per process)."""
    REGISTRY.register(RunsByStatus(store))


class TasksRunning(Collector):
    """A worker's ``ackflow_tasks_running{queue}`` and ``ackflow_worker_slots``, read at each
    scrape: ``running()`` counts the task bodies running now by task queue."""

    def __init__(self, running: Callable[[], Mapping[str, int]], slots: int) -> None:
        self._running = running
        self._slots = slots

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "ackflow_tasks_running", "Task bodies running now in this worker", labels=["queue"]
        )
        for queue, n in sorted(self._running().items()):
            g.add_metric([queue], n)
        yield g
        yield GaugeMetricFamily(
            "ackflow_worker_slots", "Tasks this worker runs at once (threads and async)", value=self._slots
        )


def collect(collectors: Iterable[Collector]) -> None:
    """Show what ``collectors`` read at each scrape (the queue gauges: runner.ops.fleet)."""
    for c in collectors:
        REGISTRY.register(c)


def serve(
    port: int, host: str = "0.0.0.0", store: Store | None = None, collectors: Iterable[Collector] = ()
) -> None:
    """Expose the registry on http://host:port/metrics (a daemon thread). Engines and
    workers serve theirs with health probes (`runner.health`)."""
    if store is not None:
        count_runs(store)
    collect(collectors)
    start_http_server(port, addr=host, registry=REGISTRY)
