"""What `ackflow queues`, `status` and the queue metrics make of the fleet (runner.ops.fleet),
on the in-process transport and store (local mode's)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest

from runner import flow, protocol, task
from runner.broker import QueueStats, task_queue
from runner.broker.local import LocalBroker, LocalHub
from runner.client import Client
from runner.define.tasks import Registry
from runner.errors import BrokerUnavailable
from runner.local import LocalRuntime
from runner.ops import fleet
from runner.ops.http.app import serve_local
from runner.presence import WorkerRecord
from runner.store.memory import MemoryStore
from tests.helpers.harness import CFG, Harness

reg = Registry()


@task(provides="o", queue="other", registry=reg)
def elsewhere() -> int:
    return 1


@task(provides="p", registry=reg)
def here() -> int:
    return 1


def test_a_scheduled_task_on_a_queue_nobody_consumes_is_reported_and_counted() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("f", elsewhere).compile(reg), {})
    h.pump()
    info = h.client.status(rid)
    assert info.tasks["elsewhere"].status == "SCHEDULED"
    (wait,) = fleet.waiting_unconsumed(h.client, info)
    assert (wait.task, wait.queue, wait.ready) == ("elsewhere", "task.other", 1)
    assert "start one (ackflow worker MODULE -Q other)" in wait.describe()
    rows = {r.queue: r for r in fleet.queue_rows(h.store, h.client.broker, CFG)}
    assert list(rows) == ["engine", "dead", "task.other"]  # noted at submit
    assert rows["task.other"].unconsumed and not rows["engine"].unconsumed
    assert not rows["dead"].unconsumed  # nobody consumes the dead queue, by design
    # a worker for the queue: nothing waits unconsumed any more
    h.hub.connect().consume([task_queue("other")], 1)
    assert fleet.waiting_unconsumed(h.client, h.client.status(rid)) == []


def test_a_task_whose_queue_is_consumed_is_not_reported() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("g", here).compile(reg), {})
    h.pump()
    assert fleet.waiting_unconsumed(h.client, h.client.status(rid)) == []


def test_a_run_no_engine_has_started_waits_on_the_engine_queue() -> None:
    h = Harness()
    h.engine.broker.close()  # the engine stops consuming
    rid = h.client.submit(flow.linear("g", here).compile(reg), {})
    (wait,) = fleet.waiting_unconsumed(h.client, h.client.status(rid))
    assert (wait.task, wait.queue) == ("", "engine") and "no engine consumes" in wait.describe()


def test_status_without_a_broker_shows_no_hint_rather_than_failing() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("f", elsewhere).compile(reg), {})
    h.pump()

    class Unreachable(LocalBroker):
        def queue_stats(self, logical: str) -> QueueStats | None:
            raise BrokerUnavailable("cannot reach broker")

    h.client._broker = Unreachable(h.hub)
    assert fleet.waiting_unconsumed(h.client, h.client.status(rid)) == []


def test_unacknowledged_counts_are_what_live_workers_hold() -> None:
    h = Harness()
    now = protocol.now_ms()
    for wid, held, heard in (("a", 2, now), ("b", 3, now), ("gone", 5, now - 60_000)):
        rec = WorkerRecord(wid, "h", 1, ["default"], 1, [], unacked={"task.default": held}, beat_s=5)
        h.store.beat_worker(wid, rec.encode(), heard, 600)
    rows = {r.queue: r for r in fleet.queue_rows(h.store, h.client.broker, CFG, now)}
    assert rows["task.default"].unacked == 5 and rows["task.default"].workers == ["a", "b"]
    assert rows["engine"].unacked is None


def test_the_collector_exposes_queue_and_worker_gauges_and_reads_nothing_when_registered() -> None:
    h = Harness()
    opened = []

    def open_broker() -> object:
        opened.append(1)
        return h.hub.connect()

    h.client.submit(flow.linear("f", elsewhere).compile(reg), {})
    h.pump()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(fleet.FleetCollector(CFG, h.store, open_broker))
    assert opened == []
    text = generate_latest(registry).decode()
    assert 'ackflow_queue_messages{queue="task.other",state="ready"} 1.0' in text
    assert 'ackflow_queue_consumers{queue="task.other"} 0.0' in text
    assert 'ackflow_queue_unconsumed{queue="task.other"} 1.0' in text
    assert 'ackflow_queue_unconsumed{queue="engine"} 0.0' in text
    assert 'ackflow_queue_unconsumed{queue="dead"}' not in text
    assert 'ackflow_workers{state="live"} 0.0' in text
    generate_latest(registry)
    assert opened == [1]  # one connection, kept between scrapes


class CountingStore(MemoryStore):
    notes: list[list[str]]

    def note_queues(self, queues: Sequence[str], now_ms: int) -> None:
        self.notes.append(list(queues))
        super().note_queues(queues, now_ms)


def test_a_client_notes_a_queue_once_not_on_every_submit() -> None:
    store = CountingStore()
    store.notes = []
    client = Client(CFG, store, LocalHub().connect)
    for _ in range(3):
        client.submit(flow.linear("f", elsewhere).compile(reg), {})
    client.submit(flow.linear("g", here, elsewhere).compile(reg), {})
    assert store.notes == [["other"], ["default"]]
    assert store.noted_queues(0) == ["default", "other"]


def test_local_mode_serves_its_worker_and_queues_over_http() -> None:
    with LocalRuntime() as rt:
        rt.run(flow.linear("f", elsewhere).compile(reg))  # noted: task.other; the local worker runs all
        url = serve_local(rt)
        page = urllib.request.urlopen(f"{url}/workers", timeout=10).read().decode()
        assert '<tr data-worker="local">' in page and "live" in page
        doc = json.loads(urllib.request.urlopen(f"{url}/v1/queues", timeout=10).read())
        rows = {q["queue"]: q for q in doc["queues"]}
        assert list(rows) == ["engine", "dead", "task.other"]
        assert rows["task.other"]["workers"] == ["local"] and not rows["task.other"]["unconsumed"]
        assert rows["engine"]["consumers"] == 1


def test_a_scrape_while_the_broker_fails_shows_the_rest_and_the_next_one_reconnects() -> None:
    h = Harness()
    opened: list[LocalBroker] = []

    class Failing(LocalBroker):
        def queue_stats(self, logical: str) -> QueueStats | None:
            raise RuntimeError("channel refused")

    def open_broker() -> LocalBroker:
        opened.append(Failing(h.hub) if not opened else h.hub.connect())
        return opened[-1]

    registry = CollectorRegistry(auto_describe=True)
    registry.register(fleet.FleetCollector(CFG, h.store, open_broker))
    text = generate_latest(registry).decode()
    assert "ackflow_queue_consumers{" not in text and 'ackflow_workers{state="live"} 0.0' in text
    text = generate_latest(registry).decode()
    assert 'ackflow_queue_consumers{queue="engine"} 1.0' in text and len(opened) == 2
