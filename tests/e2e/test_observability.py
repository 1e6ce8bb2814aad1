"""Operators' view without a browser: the runs page over 100,000 runs reads a bounded number
of keys; engines and workers expose Prometheus metrics; JSON logs carry run, task and attempt
and never a password."""

from __future__ import annotations

import json
import platform
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.connection import AbstractConnection

from runner.broker.kombu import KombuBroker
from runner.client import Client
from runner.config import Config, is_cluster_url
from runner.connect import open_store
from runner.ops.http.app import make_server
from runner.store import keys
from tests.helpers import flows, semantic_flows
from tests.helpers.net import free_port
from tests.helpers.processes import Processes, until_run

pytestmark = pytest.mark.services

N_RUNS = 100_000


@pytest.fixture
def many_runs(config: Config) -> Iterator[Any]:
    """100,000 finished runs in Redis (their meta and the indexes the pages use)."""
    store = open_store(config)
    r = store.client
    statuses = ["SUCCESS"] * 8 + ["FAILED", "CANCELLED"]
    root = keys.index_root(config.prefix, is_cluster_url(config.redis_url))
    pipe = r.pipeline(transaction=False)
    for i in range(N_RUNS):
        rid = f"bulk-{i:06d}"
        status, flow = statuses[i % 10], f"flow-{i % 7}"
        created = 1_700_000_000_000 + i * 1000
        pipe.hset(
            keys.run_key(config.prefix, rid, keys.META),
            mapping={"status": status, "flow": flow, "created_ms": created},
        )
        pipe.zadd(keys.runs_index(root), {rid: created})
        pipe.zadd(keys.status_index(root, status), {rid: created})
        pipe.zadd(keys.flow_index(root, flow), {rid: created})
        pipe.zadd(keys.flow_status_index(root, flow, status), {rid: created})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    yield store
    doomed = [keys.run_key(config.prefix, f"bulk-{i:06d}", keys.META) for i in range(N_RUNS)]
    for start in range(0, N_RUNS, 10_000):
        r.unlink(*doomed[start : start + 10_000])
    store.close()


def commands_during(fn: Any) -> tuple[int, Any]:
    """How many Redis commands this process sent while ``fn`` ran, counted as they are sent
    (one per command, pipelines included): other users of a shared Redis do not count,
    as they would in the server-wide INFO commandstats."""
    count = [0]
    one, many = AbstractConnection.send_command, AbstractConnection.pack_commands

    def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return one(self, *args, **kwargs)

    def pack_commands(self: Any, commands: Any) -> Any:
        commands = list(commands)
        count[0] += len(commands)
        return many(self, commands)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(AbstractConnection, "send_command", send_command)
        m.setattr(AbstractConnection, "pack_commands", pack_commands)
        out = fn()
    return count[0], out


def test_runs_pages_over_100k_runs_read_a_bounded_number_of_keys(config: Config, many_runs: Any) -> None:
    server = make_server(
        "127.0.0.1", 0, lambda: Client(config, open_store(config), lambda: KombuBroker(config)), 1 << 20
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:

        def get(path: str) -> str:
            return urllib.request.urlopen(server.url + path, timeout=30).read().decode()

        get("/runs")  # warm the client pool
        for path, first in [
            ("/runs", "bulk-099999"),
            ("/runs?status=FAILED", "bulk-099998"),
            ("/runs?flow=flow-3", "bulk-099998"),
            ("/runs?status=CANCELLED&flow=flow-2", "bulk-099969"),
            ("/runs?until=1700000500000", "bulk-000500"),
        ]:
            calls, html = commands_during(lambda p=path: get(p))
            assert html.count("<tr data-run=") == 50, path
            assert f'data-run="{first}"' in html, path
            assert 0 < calls < 250, f"{path}: {calls} Redis commands for one page"  # ~50 rows, never 100k
        assert "all 100000" in get("/runs")
        html = get("/runs?status=FAILED")
        older = html.split('class="older" href="')[1].split('"')[0].replace("&amp;", "&")
        calls, page2 = commands_during(lambda: get(older))
        assert 'data-run="bulk-099498"' in page2 and 0 < calls < 250
    finally:
        server.shutdown()
        server.server_close()
        server.close_clients()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_engine_and_worker_expose_prometheus_metrics(
    procs: Processes, client: Client, config: Config
) -> None:
    from runner.broker import ENGINE_QUEUE, Outgoing

    ep, wp = free_port(), free_port()
    procs.engine("--metrics-port", str(ep))
    procs.worker("--metrics-port", str(wp))
    ok = client.submit(flows.chain(3), {"v0": 0})
    bad = client.submit(flows.failing_flow, {"x": 1})
    assert procs.wait(client, ok).status == "SUCCESS" and procs.wait(client, bad).status == "FAILED"
    broker = KombuBroker(config)
    try:
        broker.publish([Outgoing(ENGINE_QUEUE, "junk", b"\xc1")])
    finally:
        broker.close()
    watch = client.store.watch(ok)
    for _ in range(40):  # the junk is dead-lettered by the engine: wait for its counter
        e = scrape(ep)
        if e.get(("ackflow_dead_letters_total", (("reason", "malformed"), ("role", "engine")))):
            break
        watch.wait(0.25)
    watch.close()
    w = scrape(wp)
    assert e[("ackflow_events_total", (("kind", "task.succeeded"), ("outcome", "applied")))] >= 4
    assert e[("ackflow_events_total", (("kind", "task.failed"), ("outcome", "applied")))] >= 1
    assert (
        e[("ackflow_runs", (("status", "SUCCESS"),))] >= 1
        and e[("ackflow_runs", (("status", "FAILED"),))] >= 1
    )
    # run durations by flow (issue 19, item 4)
    assert e[("ackflow_run_duration_seconds_count", (("flow", "chain3"), ("status", "SUCCESS")))] == 1
    assert e[("ackflow_run_duration_seconds_count", (("flow", "failing"), ("status", "FAILED")))] == 1
    assert e[("ackflow_dead_letters_total", (("reason", "malformed"), ("role", "engine")))] == 1
    assert e[("ackflow_publish_confirm_seconds_count", (("role", "engine"),))] >= 1
    assert (
        w[("ackflow_task_duration_seconds_count", (("outcome", "succeeded"), ("task", "inc")))] == 4
    )  # 3 + "before"
    assert w[("ackflow_task_duration_seconds_count", (("outcome", "failed"), ("task", "explode")))] == 1
    assert w[("ackflow_published_total", (("role", "worker"),))] >= 5  # one result per task, at least
    for scraped in (e, w):  # the process collectors and the build info, on both
        assert scraped[("process_resident_memory_bytes", ())] > 0
        assert scraped[("process_start_time_seconds", ())] > 0
        assert any(name == "python_info" for name, _ in scraped)
        assert any(name == "python_gc_collections_total" for name, _ in scraped)
        (build,) = [dict(labels) for name, labels in scraped if name == "ackflow_build_info"]
        assert build["version"] and build["python"] == platform.python_version()
        assert build["kombu"] != "unknown" and build["redis"] != "unknown"
    assert w[("ackflow_tasks_running", (("queue", "task.default"),))] == 0  # nothing runs now
    assert w[("ackflow_worker_slots", ())] == 1
    # a role's series show at 0 before anything happens: rates and increases see the first one
    assert w[("ackflow_redeliveries_total", (("role", "worker"),))] == 0
    assert e[("ackflow_dead_letters_total", (("reason", "poison"), ("role", "engine")))] == 0


def test_json_logs_say_which_run_task_and_attempt_and_hide_passwords(
    procs: Processes, client: Client
) -> None:
    env = {"ACKFLOW_LOG_LEVEL": "debug"}
    procs.start("--log-format", "json", "engine", env=env, name="engine")
    procs.start("--log-format", "json", "worker", "tests.helpers.flows", env=env, name="worker")
    rid = client.submit(flows.failing_flow, {"x": 1}, run_id="logs-" + uuid.uuid4().hex[:8])
    assert procs.wait(client, rid).status == "FAILED"
    for p in procs.procs:  # graceful stop: each finishes (and logs) what it was doing
        p.terminate()
    for p in procs.procs:
        p.wait(timeout=30)
    lines = [
        ln for p in sorted(procs.logdir.glob("*.log")) for ln in p.read_text().splitlines() if ln.strip()
    ]
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    about = [r for r in records if r.get("run_id") == rid]
    assert any(r.get("task") == "explode" and r.get("attempt") == 1 and "failed" in r["msg"] for r in about)
    assert any(r["logger"] == "ackflow.engine" and r.get("task") == "explode" for r in about)
    text = "\n".join(lines)
    assert "guest:guest@" not in text and "guest:***@" in text


def test_a_worker_counts_the_tasks_it_runs_by_queue(procs: Processes, client: Client) -> None:
    wp = free_port()
    procs.engine()
    worker = procs.start("worker", "tests.helpers.semantic_flows", "-c", "3", "--metrics-port", str(wp))
    procs.until_logged(worker, "started: queues")
    running = ("ackflow_tasks_running", (("queue", "task.default"),))
    assert scrape(wp)[running] == 0 and scrape(wp)[("ackflow_worker_slots", ())] == 3
    # a task that runs until its run is cancelled; it reports progress once it runs
    rid = client.submit(semantic_flows.cancel_flow, {"log": f"log-{uuid.uuid4().hex}"})
    until_run(client, rid, lambda: scrape(wp)[running] == 1, "the worker to count the task", procs)
    client.cancel(rid)
    assert procs.wait(client, rid).status == "CANCELLED"
    until_run(client, rid, lambda: scrape(wp)[running] == 0, "the task to be counted out", procs)
