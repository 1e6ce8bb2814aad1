"""The dashboard in a real browser: headless Debian Chromium driven by Playwright, against
``ackflow serve`` with an engine and a worker started through the CLI on RabbitMQ + Redis.
A test clicks through a running flow and a failed one and checks what a person would see;
screenshots of the main pages go to docs/ (shown in the README)."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.client import Client
from runner.config import Config
from runner.errors import RunNotFound
from tests.helpers import flows
from tests.helpers import semantic_flows as sf
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services

OPERATOR = "op-" + uuid.uuid4().hex


def start_serve(procs: Processes, env: dict[str, str]) -> str:
    return procs.serve(env=env)


def until_status(client: Client, run_id: str, status: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    watch = client.store.watch(run_id)
    try:
        while True:
            try:
                info = client.status(run_id)
                if info.status == status or (
                    status == "RUNNING"
                    and info.tasks.get("gated_step", None)
                    and info.tasks["gated_step"].status == "RUNNING"
                ):
                    return
            except RunNotFound:
                pass
            assert time.monotonic() < deadline, f"{run_id} never {status}"
            watch.wait(0.5)
    finally:
        watch.close()


def test_clicking_through_a_running_and_a_failed_run(
    page: Any, shots: Path, procs: Processes, client: Client, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)
    env = {"ACKFLOW_OPERATOR_TOKEN": OPERATOR}
    procs.engine()
    procs.start("worker", "tests.helpers.flows", "tests.helpers.semantic_flows", "-c", "4")
    base = start_serve(procs, env)
    failed = client.submit(flows.failing_flow, {"x": 1}, run_id="failed-" + uuid.uuid4().hex[:6])
    assert procs.wait(client, failed).status == "FAILED"
    gate = f"ackflow-test:gate:{uuid.uuid4().hex}"
    running = client.submit(
        sf.pause_flow, {"x": 1, "gate_key": gate}, run_id="running-" + uuid.uuid4().hex[:6]
    )
    until_status(client, running, "RUNNING")

    # The runs list: both runs, their states, counts per status.
    page.goto(f"{base}/runs")
    row = page.locator(f'tr[data-run="{failed}"]')
    assert "FAILED" in row.inner_text() and "failing" in row.inner_text()
    assert "RUNNING" in page.locator(f'tr[data-run="{running}"]').inner_text()
    assert "FAILED 1" in page.locator(".counts").inner_text()
    page.screenshot(path=str(shots / "dashboard-runs.png"), full_page=True)
    page.select_option("select[name=status]", "FAILED")
    page.click("text=filter")
    assert page.locator(f'tr[data-run="{failed}"]').count() == 1
    assert page.locator(f'tr[data-run="{running}"]').count() == 0

    # The failed run: its error and traceback, the failed task red in the DAG, the history.
    page.click(f'a[href="/runs/{failed}"]')
    assert page.locator("h1").inner_text().endswith("FAILED")
    error = page.locator(".card.error").inner_text()
    assert "in task explode: ValueError: boom 2" in error
    assert 'raise ValueError(f"boom {x}")' in page.locator("pre.traceback").inner_text()
    assert page.locator('g.task[data-task="explode"]').get_attribute("data-status") == "FAILED"
    assert page.locator('g.task[data-task="after"]').get_attribute("data-status") == "PENDING"
    assert "RUNNING → FAILED" in page.locator("table.history").inner_text()
    assert page.locator("button[value=retry]").count() == 0  # read-only until an operator logs in
    page.screenshot(path=str(shots / "dashboard-failed-run.png"), full_page=True)

    # The running run, then control as an operator: a wrong token is refused.
    page.goto(f"{base}/runs/{running}")
    assert page.locator('g.task[data-task="gated_step"]').get_attribute("data-status") == "RUNNING"
    page.fill("input[name=token]", "not-the-token")
    page.click("text=log in")
    assert "wrong operator token" in page.locator(".flash").inner_text()
    page.fill("input[name=token]", OPERATOR)
    page.click("text=log in")
    page.goto(f"{base}/runs/{running}")
    assert page.locator("button[value=resume]").is_disabled()
    page.screenshot(path=str(shots / "dashboard-run.png"), full_page=True)
    page.click("button[value=pause]")
    assert "pause: run is PAUSED" in page.locator(".flash").inner_text()
    assert page.locator("h1").inner_text().endswith("PAUSED")
    page.click("button[value=resume]")
    assert "resume: run is RUNNING" in page.locator(".flash").inner_text()
    sf.open_gate(gate)
    page.wait_for_function("document.querySelector('h1').innerText.endsWith('SUCCESS')", timeout=30_000)
    history = page.locator("table.history").inner_text()
    assert "RUNNING → PAUSED" in history and "PAUSED → RUNNING" in history
    assert client.status(running).result == {"g2": 3}

    # Retry the failed run from the dashboard: refused after the flow fails again, shown.
    page.goto(f"{base}/runs/{failed}")
    page.click("button[value=retry]")
    assert "retry: run is RUNNING" in page.locator(".flash").inner_text()
    assert procs.wait(client, failed).status == "FAILED"

    # Nothing on any page reveals a secret.
    for path in ("/runs", f"/runs/{running}", f"/runs/{failed}", "/dlq"):
        html = urllib.request.urlopen(base + path, timeout=10).read().decode()
        assert config.secret not in html and OPERATOR not in html and "guest:guest" not in html


def test_dead_letters_are_listed_replayed_and_purged(
    page: Any, shots: Path, procs: Processes, client: Client, config: Config
) -> None:
    from runner.broker import ENGINE_QUEUE, Outgoing
    from runner.broker.kombu import KombuBroker

    procs.engine()
    base = start_serve(procs, {"ACKFLOW_OPERATOR_TOKEN": OPERATOR})
    broker = KombuBroker(config)
    try:
        broker.publish([Outgoing(ENGINE_QUEUE, "junk-1", b"\xc1 not msgpack")])
    finally:
        broker.close()
    page.goto(f"{base}/dlq")
    page.wait_for_function(
        "document.querySelector('tr[data-dead]') !== null || (location.reload(), false)",
        timeout=20_000,
        polling=500,
    )
    row = page.locator('tr[data-dead="junk-1"]').inner_text()
    assert "body is not msgpack" in row and "engine" in row
    assert page.locator("text=purge all").count() == 0  # not an operator yet
    page.fill("input[name=token]", OPERATOR)
    page.click("text=log in")
    page.goto(f"{base}/dlq")
    page.screenshot(path=str(shots / "dashboard-dlq.png"), full_page=True)
    page.click('tr[data-dead="junk-1"] button')
    assert "replayed junk-1 to engine" in page.locator(".flash").inner_text()
    # The engine rejects the junk again; purge it.
    page.wait_for_function(
        "document.querySelector('tr[data-dead]') !== null || (location.reload(), false)",
        timeout=20_000,
        polling=500,
    )
    page.click("text=purge all")
    assert "purged 1 dead letters" in page.locator(".flash").inner_text()
    assert page.locator("tr[data-dead]").count() == 0


def test_workers_and_queues_pages_and_a_run_waiting_on_a_queue_nobody_consumes(
    page: Any, shots: Path, procs: Processes, client: Client
) -> None:
    procs.engine()
    worker = procs.start("worker", "tests.helpers.semantic_flows", "--name", "worker-1", "-c", "2")
    procs.until_logged(worker, "worker worker-1 recorded in Redis")
    base = start_serve(procs, {})
    log = f"ackflow-test:log:{uuid.uuid4().hex}"
    busy = client.submit(sf.cancel_flow, {"log": log}, run_id="busy-" + uuid.uuid4().hex[:6])
    stuck = client.submit(flows.lonely_flow, {"x": 1}, run_id="stuck-" + uuid.uuid4().hex[:6])
    until_status(client, stuck, "RUNNING")

    # The header leads to the Workers page: the worker, live, with the task it runs (shown on
    # its next heartbeat: the page refreshes itself every 2 s).
    page.goto(f"{base}/runs")
    page.click("header >> text=Workers")
    row = page.locator('tr[data-worker="worker-1"]')
    assert "live" in row.inner_text() and "default" in row.inner_text()
    page.wait_for_function(
        f"document.querySelector('tr[data-worker=\"worker-1\"]').innerText.includes('{busy}')",
        timeout=30_000,
    )
    assert "until_cancelled" in row.inner_text()
    page.screenshot(path=str(shots / "dashboard-workers.png"), full_page=True)
    client.cancel(busy)  # its task stops when it hears of it
    assert procs.wait(client, busy).status == "CANCELLED"

    # The Queues page: the queue nobody consumes stands out.
    page.click("header >> text=Queues")
    other = page.locator('tr[data-queue="task.other"]')
    assert "nobody consumes it" in other.inner_text() and other.get_attribute("class") == "fenced"
    assert "worker-1" in page.locator('tr[data-queue="task.default"]').inner_text()
    page.screenshot(path=str(shots / "dashboard-queues.png"), full_page=True)

    # The stuck run's page says what it waits on.
    page.goto(f"{base}/runs/{stuck}")
    card = page.locator("#unconsumed").inner_text()
    assert "task lonely waits on queue 'other'" in card and "no worker consumes" in card
