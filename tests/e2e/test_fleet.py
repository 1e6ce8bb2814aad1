"""Workers and queues as operators see them (issue 19, items 1 and 2), on real RabbitMQ and Redis
with engine, worker and ``ackflow serve`` processes: ``ackflow workers|queues|status``, the
dashboard's pages and JSON, and the queue metrics scraped from an engine."""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner import protocol
from runner.client import Client
from runner.config import Config, is_cluster_url
from runner.store import keys
from tests.helpers import flows, semantic_flows
from tests.helpers.net import free_port
from tests.helpers.processes import Processes, until_run

pytestmark = pytest.mark.services

FAST_BEATS = {"ACKFLOW_WORKER_BEAT_S": "0.2"}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return str(r.read().decode())


def cli_json(procs: Processes, *args: str) -> list[dict[str, Any]]:
    out = procs.run(*args, "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def by_id(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in rows}


def test_workers_are_listed_live_with_what_they_run_then_lost_or_stopped(
    procs: Processes, client: Client, config: Config
) -> None:
    procs.engine()
    # its task runs under a lease at once, and hears of its run's cancel on a lease heartbeat
    leased = {**FAST_BEATS, "ACKFLOW_ACK_AFTER_S": "0", "ACKFLOW_LEASE_S": "1"}
    a = procs.start("worker", "tests.helpers.semantic_flows", "--name", "w-a", "-c", "2", env=leased)
    b = procs.start("worker", "tests.helpers.flows", "--name", "w-b", "-Q", "other", env=FAST_BEATS)
    procs.until_logged(a, "worker w-a recorded in Redis")
    procs.until_logged(b, "worker w-b recorded in Redis")
    # a task that runs until its run is cancelled (a gate's BLPOP would time out after 5 s)
    rid = client.submit(semantic_flows.cancel_flow, {"log": f"log-{uuid.uuid4().hex}"})

    def a_runs_it() -> bool:  # and holds no delivery for it: leased
        wa = by_id(cli_json(procs, "workers"), "id")["w-a"]
        return any(r["run_id"] == rid for r in wa["running"]) and wa["unacked"] == {}

    # what a worker runs shows on its next beat (every 0.2 s here); checked on each change of the run
    until_run(client, rid, a_runs_it, "w-a to report the task it runs", procs)
    rows = by_id(cli_json(procs, "workers"), "id")
    wa, wb = rows["w-a"], rows["w-b"]
    assert (wa["state"], wa["queues"], wa["concurrency"], wa["pid"]) == ("live", ["default"], 2, a.pid)
    assert "until_cancelled" in wa["tasks"] and wa["version"] and wa["started_ms"] > 0
    assert [r["task"] for r in wa["running"]] == ["until_cancelled"]
    assert wa["unacked"] == {}  # its delivery was acknowledged: it runs under a lease
    assert (wb["state"], wb["queues"], wb["running"]) == ("live", ["other"], [])
    text = procs.run("workers")
    assert text.returncode == 0 and "2 live, 0 lost, 0 stopped" in text.stderr
    assert f"running until_cancelled (attempt 1) of run {rid}" in text.stdout

    base = procs.serve()
    page = get(f"{base}/workers")
    assert "<h1>Workers (2 live of 2)</h1>" in page and "w-a" in page and "w-b" in page
    assert f'href="/runs/{rid}"' in page and 'href="/workers"' in page
    api = {w["id"]: w for w in json.loads(get(f"{base}/v1/workers"))["workers"]}
    assert api["w-a"]["state"] == "live" and api["w-a"]["running"][0]["run_id"] == rid

    client.cancel(rid)
    assert procs.wait(client, rid).status == "CANCELLED"
    # w-b dies without a word; w-a stops cleanly
    b.send_signal(signal.SIGKILL)
    b.wait(30)
    procs.retire(b)
    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0
    procs.retire(a)
    # w-b's last heartbeat, made a minute old: silent for more than three beats, it is lost
    store = client.store
    root = keys.index_root(config.prefix, is_cluster_url(config.redis_url))
    store.client.zadd(f"{root}:workers:heard", {"w-b": protocol.now_ms() - 60_000})  # type: ignore[attr-defined]
    rows = by_id(cli_json(procs, "workers"), "id")
    assert (rows["w-a"]["state"], rows["w-b"]["state"]) == ("stopped", "lost")
    assert procs.run("workers").stderr.strip() == "0 live, 1 lost, 1 stopped"
    assert "<h1>Workers (0 live of 2)</h1>" in get(f"{base}/workers")
    # heard from longer ago than ACKFLOW_WORKER_KEEP_S: forgotten
    store.client.zadd(f"{root}:workers:heard", {"w-b": protocol.now_ms() - 601_000})  # type: ignore[attr-defined]
    assert list(by_id(cli_json(procs, "workers"), "id")) == ["w-a"]


def test_a_run_waiting_on_a_queue_nobody_consumes_says_so_everywhere(
    procs: Processes, client: Client, config: Config
) -> None:
    # no engine yet: the run waits on the engine queue
    early = client.submit(flows.chain(1), {"v0": 0})
    out = procs.run("status", early)
    assert out.returncode == 0 and "which no engine consumes: start one (ackflow engine)" in out.stdout
    port = free_port()
    procs.engine("--metrics-port", str(port))
    w = procs.worker(env=FAST_BEATS)
    procs.until_logged(w, "recorded in Redis")
    assert procs.wait(client, early).status == "SUCCESS"

    rid = client.submit(flows.lonely_flow, {"x": 7})
    until_run(
        client,
        rid,
        lambda: getattr(client.status(rid).tasks.get("lonely"), "status", "") == "SCHEDULED",
        "lonely scheduled",
        procs,
    )
    out = procs.run("status", rid)
    assert out.returncode == 0, out.stderr
    assert (
        "warning: task lonely waits on queue 'other' "
        f"({config.prefix}.task.other, 1 ready), which no worker consumes: "
        "start one (ackflow worker MODULE -Q other)"
    ) in out.stdout
    (doc,) = cli_json(procs, "status", rid)
    assert doc["unconsumed"] == [
        {"task": "lonely", "queue": "task.other", "name": f"{config.prefix}.task.other", "ready": 1}
    ]

    rows = by_id(cli_json(procs, "queues"), "queue")
    assert list(rows) == ["engine", "dead", "task.default", "task.other"]
    assert (rows["task.other"]["ready"], rows["task.other"]["consumers"]) == (1, 0)
    assert rows["task.other"]["unconsumed"] is True and rows["task.other"]["unacked"] == 0
    assert rows["task.default"]["consumers"] == 1 and len(rows["task.default"]["workers"]) == 1
    assert rows["engine"]["consumers"] == 1 and rows["engine"]["unacked"] is None
    text = procs.run("queues")
    assert "NO CONSUMER" in text.stdout and f"wait in {config.prefix}.task.other" in text.stderr

    m = scrape(port)
    assert m[("ackflow_queue_messages", (("queue", "task.other"), ("state", "ready")))] == 1
    assert m[("ackflow_queue_consumers", (("queue", "task.other"),))] == 0
    assert m[("ackflow_queue_unconsumed", (("queue", "task.other"),))] == 1
    assert m[("ackflow_queue_consumers", (("queue", "task.default"),))] == 1
    assert m[("ackflow_queue_messages", (("queue", "task.default"), ("state", "unacked")))] == 0
    assert m[("ackflow_queue_unconsumed", (("queue", "engine"),))] == 0
    assert m[("ackflow_workers", (("state", "live"),))] == 1

    base = procs.serve()
    page = get(f"{base}/queues")
    assert "task.other" in page and "messages wait and nobody consumes it" in page
    run_page = get(f"{base}/runs/{rid}")
    assert 'id="unconsumed"' in run_page and "waits on queue &#x27;other&#x27;" in run_page
    api = {q["queue"]: q for q in json.loads(get(f"{base}/v1/queues"))["queues"]}
    assert api["task.other"]["unconsumed"] is True

    # a worker for the queue: the run finishes and nothing is reported any more
    procs.worker("-Q", "other")
    assert procs.wait(client, rid).status == "SUCCESS"
    assert "warning" not in procs.run("status", rid).stdout
    assert "unconsumed" not in get(f"{base}/runs/{rid}")
    m = scrape(port)
    assert m[("ackflow_queue_unconsumed", (("queue", "task.other"),))] == 0
    assert m[("ackflow_queue_consumers", (("queue", "task.other"),))] == 1
