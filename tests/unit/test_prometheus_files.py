"""The Grafana dashboard and Prometheus alert rules shipped in compose/ (issue 19, item 4): every
metric their queries name exists in ackflow's registries, the rules have Prometheus's rule-group
shape, the dashboard is a Grafana dashboard whose variables exist, and the README's metrics
table lists every metric with its labels."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import promql

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "compose" / "grafana" / "ackflow.json"
RULES = ROOT / "compose" / "prometheus" / "ackflow-alerts.yml"
RULES_TESTS = ROOT / "compose" / "prometheus" / "ackflow-alerts.test.yml"
PROMETHEUS = ROOT / "compose" / "prometheus" / "prometheus.example.yml"
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def rules() -> dict[str, Any]:
    data = yaml.safe_load(RULES.read_text())
    assert isinstance(data, dict)
    return data


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def dashboard_queries() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in panels(d["panels"]) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            exprs.append(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
    return exprs


def rule_queries() -> list[str]:
    return [r["expr"] for g in rules()["groups"] for r in g["rules"]]


def test_metric_names_come_out_of_promql_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, role) (rate(ackflow_x_bucket{role=~"a|b",q="{x}"}[5m]'
        " offset 1h))) > 0.5 and on (role) max without (queue) (ackflow_y) or vector(1)"
        " / ignoring(a) group_left(b) ackflow_z_total{a='sum(no_metric)'}[$__rate_interval]"
    )
    assert promql.metric_names(expr) == {"ackflow_x_bucket", "ackflow_y", "ackflow_z_total"}
    assert promql.metric_names("label_values(ackflow_q, queue)") == {"ackflow_q"}
    assert promql.metric_names('sum(rate(ackflow_w{flow=~"$flow"}[${__range}]))') == {"ackflow_w"}
    with pytest.raises(ValueError, match="rat"):
        promql.metric_names("rat(ackflow_x[5m])")


def test_the_suffix_rules_give_what_prometheus_scrapes() -> None:
    assert promql.series_names("ackflow_events", "counter") == {
        "ackflow_events_total",
        "ackflow_events_created",
    }
    assert promql.series_names("h", "histogram") == {"h_bucket", "h_sum", "h_count", "h_created"}
    assert promql.series_names("g", "gauge") == {"g"}
    known = promql.known_series()
    for name in (
        "ackflow_events_total",
        "ackflow_run_duration_seconds_bucket",
        "ackflow_runs",
        "ackflow_queue_unconsumed",
        "ackflow_tasks_running",
        "ackflow_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in known
    assert "ackflow_events" not in known and "ackflow_runs_total" not in known


@pytest.mark.parametrize(("what", "queries"), [("dashboard", dashboard_queries), ("rules", rule_queries)])
def test_every_metric_the_queries_name_exists(what: str, queries: Any) -> None:
    exprs = queries()
    known = promql.known_series()
    used = {name for e in exprs for name in promql.metric_names(e)}
    assert len(exprs) >= 8 and len(used) >= 8, what
    assert used - known == set(), f"{what} name metrics ackflow does not expose"


def test_the_dashboard_shows_every_ackflow_metric() -> None:
    used = {name for e in dashboard_queries() for name in promql.metric_names(e)}
    missing = {
        name
        for name, kind, _ in promql.exposed()
        if name.startswith("ackflow_") and not promql.series_names(name, kind) & used
    }
    assert missing == {"ackflow_store_settings_info"}  # a table of settings: in the alert's text


def test_the_alert_rules_are_prometheus_rule_groups() -> None:
    data = rules()
    assert set(data) == {"groups"} and data["groups"]
    names = [g["name"] for g in data["groups"]]
    assert len(names) == len(set(names))
    alerts = []
    for g in data["groups"]:
        assert set(g) <= {"name", "interval", "limit", "rules"} and g["rules"]
        for r in g["rules"]:
            assert set(r) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, r
            assert isinstance(r["alert"], str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", r["alert"])
            assert isinstance(r["expr"], str) and r["expr"].count("(") == r["expr"].count(")")
            assert "for" not in r or DURATION.fullmatch(r["for"]), r["for"]
            assert r["labels"]["severity"] in ("warning", "critical")
            assert all(isinstance(v, str) for v in [*r["labels"].values(), *r["annotations"].values()])
            assert r["annotations"]["summary"] and r["annotations"]["description"]
            alerts.append(r["alert"])
    assert len(alerts) == len(set(alerts))
    # what issue 19 asks to be alerted on
    for name in (
        "AckflowQueueNotConsumed",
        "AckflowDeadLettersGrowing",
        "AckflowRunsFailing",
        "AckflowRunsLost",
        "AckflowConfirmLatencyHigh",
    ):
        assert name in alerts


def test_promtool_accepts_the_rules_and_the_config_and_the_rules_fire_as_their_tests_say() -> None:
    promtool = promql.prometheus_tool("promtool")
    for args in (
        ["check", "rules", RULES.name],
        ["check", "config", PROMETHEUS.name],
        ["test", "rules", RULES_TESTS.name],
    ):
        done = subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    # every alert is tested
    tested = {
        t["alertname"] for c in yaml.safe_load(RULES_TESTS.read_text())["tests"] for t in c["alert_rule_test"]
    }
    assert tested == {r["alert"] for g in rules()["groups"] for r in g["rules"]}


def test_the_example_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert [(PROMETHEUS.parent / f).resolve() for f in config["rule_files"]] == [RULES.resolve()]
    assert all(j["job_name"].startswith("ackflow") for j in config["scrape_configs"])


def test_the_dashboard_is_a_grafana_dashboard_with_its_variables() -> None:
    d = dashboard()
    assert d["uid"] == "ackflow" and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"] for v in d["templating"]["list"]}
    assert "datasource" in variables
    ids = [p["id"] for p in panels(d["panels"])]
    assert len(ids) == len(set(ids))
    for p in panels(d["panels"]):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
    for e in dashboard_queries():
        for v in re.findall(r"\$\{?(\w+)", e):
            assert v in variables or v in GRAFANA_VARIABLES, f"${v} in {e}"


def test_the_readme_lists_every_ackflow_metric_with_its_labels() -> None:
    text = (ROOT / "README.md").read_text()
    table = {
        m.group(1): tuple(sorted(x.strip() for x in m.group(2).split(",") if x.strip()))
        for m in re.finditer(r"^\| `(ackflow_\w+)` \|([^|]*)\|", text, re.M)
    }
    want = {}
    for name, kind, labels in promql.exposed():
        if name.startswith("ackflow_"):
            shown = name + "_total" if kind == "counter" else name
            want[shown] = tuple(sorted(labels))
    assert table == want
    assert "compose/grafana/ackflow.json" in text and "compose/prometheus/ackflow-alerts.yml" in text
