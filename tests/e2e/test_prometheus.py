"""The shipped Grafana dashboard and alert rules against a real Prometheus (issue 19, item 4):
Prometheus scrapes a real engine and worker, then every query of the dashboard runs without
error and shows data, its variables list the values they should, and every alert rule
evaluates cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.broker import ENGINE_QUEUE, Outgoing
from runner.broker.kombu import KombuBroker
from runner.client import Client
from runner.client.flows import register
from runner.config import Config
from tests.helpers import flows, promql
from tests.helpers.net import free_port
from tests.helpers.processes import Processes
from tests.helpers.schedules import wait_until

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "compose" / "grafana" / "ackflow.json"
RULES = ROOT / "compose" / "prometheus" / "ackflow-alerts.yml"
# Panels that show nothing while all is well: queues with no consumer.
EMPTY_WHEN_HEALTHY = {"Queues with messages and no consumer"}


class Prometheus:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def until(self, expr: str, what: str, timeout_s: float = 60) -> None:
        """Wait until ``expr`` has a result; between tries wait on the Prometheus process,
        so that its death fails the wait at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.query(expr):
                    return
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.log.read_text()}"
            try:
                self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"prometheus exited with {self.proc.returncode}\n{self.log.read_text()}")


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    binary = promql.prometheus_tool("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(targets: dict[str, int]) -> Prometheus:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for job, port in targets.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return Prometheus(proc, f"http://127.0.0.1:{port}", log)

    yield start
    for p in started:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def as_prometheus_runs_it(expr: str) -> str:
    """A dashboard query as Grafana sends it with every variable on "All"."""
    expr = expr.replace("$__rate_interval", "1m")
    return re.sub(r"\$\{?(flow|queue|job)\}?", ".*", expr)


def test_the_dashboard_and_the_alert_rules_work_on_a_real_prometheus(
    procs: Processes, client: Client, config: Config, prometheus_for: Any
) -> None:
    ep, wp = free_port(), free_port()
    procs.engine("--metrics-port", str(ep))
    procs.worker("--metrics-port", str(wp))
    prom = prometheus_for({"ackflow-engine": ep, "ackflow-worker": wp})
    prom.until("min(count_over_time(up[1m])) >= 2 and min(up) == 1 and count(up) == 2", "two scrapes of both")
    ok = client.submit(flows.chain(3), {"v0": 0})
    bad = client.submit(flows.failing_flow, {"x": 1})
    assert procs.wait(client, ok).status == "SUCCESS" and procs.wait(client, bad).status == "FAILED"
    register(client.store, flows.chain(3).compile())  # a one-shot schedule's firing, for its panel
    client.schedules.add("prom-once", "chain3", {"v0": 1}, in_=1, run_id="prom-once-run")
    wait_until(lambda: bool(client.schedules.get("prom-once").last_ms), 30, "the firing", procs)
    assert procs.wait(client, "prom-once-run").status == "SUCCESS"
    broker = KombuBroker(config)
    try:  # a dead letter, after Prometheus saw the counter at 0: an increase it can see
        broker.publish([Outgoing(ENGINE_QUEUE, "junk", b"\xc1")])
    finally:
        broker.close()
    # the alert without `for:` fires on the first evaluation that sees the dead letter
    prom.until('ALERTS{alertname="AckflowDeadLettersGrowing",alertstate="firing"}', "the dead-letter alert")
    # two samples of every series the runs made: a rate of each has a value
    prom.until(
        "min(count_over_time(ackflow_run_duration_seconds_count[1m])) >= 2"
        " and min(count_over_time(ackflow_task_duration_seconds_count[1m])) >= 2"
        ' and count(ackflow_run_duration_seconds_count{flow="failing"})'
        " and min(count_over_time(ackflow_schedule_firings_total[1m])) >= 2",
        "two scrapes of the runs",
    )

    dashboard = json.loads(DASHBOARD.read_text())
    targets = [
        (p["title"], t["expr"]) for p in promql_panels(dashboard["panels"]) for t in p.get("targets", [])
    ]
    assert len(targets) >= 25
    empty = []
    for title, expr in targets:
        if not prom.query(as_prometheus_runs_it(expr)) and title not in EMPTY_WHEN_HEALTHY:
            empty.append((title, expr))
    assert empty == [], "panels without data"

    # the variables' label_values queries list what they should
    def values(label: str, metric: str) -> set[str]:
        return set(prom.api(f"label/{label}/values", **{"match[]": metric}))

    variables = {
        v["name"]: v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    }
    assert variables["flow"] == "label_values(ackflow_run_duration_seconds_count, flow)"
    assert {"chain3", "failing"} <= values("flow", "ackflow_run_duration_seconds_count")
    assert {"engine", "dead", "task.default"} <= values("queue", "ackflow_queue_messages")
    assert values("job", "ackflow_build_info") == {"ackflow-engine", "ackflow-worker"}

    # Prometheus loaded every alert rule, and each evaluates without error
    groups = prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {r["name"] for r in rules} == shipped
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    alerts = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]}  # firing or pending
    assert "AckflowQueueNotConsumed" not in alerts and "AckflowRunsLost" not in alerts


def promql_panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from promql_panels(p.get("panels", []))
