"""The metrics an engine keeps itself (issue 19, item 4): run durations by flow, with the
number of flow label values bounded; the build info."""

from __future__ import annotations

import platform

import pytest

from runner import metrics
from tests.helpers import flows
from tests.helpers.harness import Harness


def finished(flow: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "ackflow_run_duration_seconds_count", {"flow": flow, "status": status}
    )
    return value or 0.0


def test_a_finished_run_is_timed_under_its_flow_name() -> None:
    h = Harness()
    before = finished("chain2", "SUCCESS")
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    for v in (1, 2):
        h.pump()
        [req] = h.requests()
        h.send(h.result(req, **{f"v{v}": v}))
    h.pump()
    assert h.client.status(rid).status == "SUCCESS"
    assert finished("chain2", "SUCCESS") == before + 1


def test_past_the_limit_further_flows_are_counted_as_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_FLOW_LABELS", 2)
    monkeypatch.setattr(metrics, "_flow_labels", set())
    assert [metrics.flow_label(f) for f in ("a", "b", "c", "a", "")] == ["a", "b", "other", "a", "other"]


def test_the_build_info_names_the_versions() -> None:
    samples = [s for f in metrics.REGISTRY.collect() if f.name == "ackflow_build_info" for s in f.samples]
    assert len(samples) == 1 and samples[0].value == 1
    assert samples[0].labels["python"] == platform.python_version()
    assert samples[0].labels["version"] not in ("", "unknown")
