"""The bench's arithmetic and order without services: rounds alternate which side goes first
(ABBA), the table's ratio is ackflow's median over the peer's, a missing peer leaves its row
without figures or ratio, scale-out is compared with the same run's 1 + 1 chains, and the CPU
meter counts a process's children."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from runner.config import Config
from runner.ops.bench import cpu, plan, report, rounds


def figs(rate: float, **cpu_per_1000: float) -> dict[str, Any]:
    return {"steps_per_s": rate, "cpu_per_1000": cpu_per_1000}


def raw(celery: bool) -> dict[str, Any]:
    runs = {
        "chains": {"ackflow": [figs(100, engine=1.0), figs(300, engine=3.0), figs(200, engine=2.0)]},
        "chords": {"ackflow": [figs(50), figs(70), figs(60)]},
        "local": {"ackflow": [figs(1000)] * 3, "peer": [figs(250, **{"in-process": 4.0})] * 3},
        "scale2": {"ackflow": [figs(150), figs(250), figs(180)]},
    }
    if celery:
        runs["chains"]["peer"] = [figs(50, **{"celery worker": 2.0})] * 3
        runs["chords"]["peer"] = [figs(20), figs(40), figs(30)]
    return {
        "rounds": runs,
        "peers": {"celery": "5.7.0" if celery else "not installed (x)", "taskflow": "6.5.0"},
        "peer_installed": {"celery": celery, "taskflow": True},
        "idle": {"p50_ms": 30.0, "p99_ms": 40.0, "runs": 3.0},
        "size": {
            shape: {
                "sizes": {
                    "2": {"steps_per_s": 10.0, "bytes_per_task": 900.0},
                    "5": {"steps_per_s": 9.0, "bytes_per_task": 800.0},
                },
                "largest_over_smallest": 0.9,
            }
            for shape in ("chain", "map")
        },
        "seconds": 1.0,
    }


def test_the_ratio_is_ackflow_median_over_the_peer_median() -> None:
    s = report.summarise(raw(celery=True), plan.SMOKE, scale=False)
    assert s["chains"]["ackflow"]["median"] == 200
    assert s["chains"]["ratio"] == 200 / 50 and s["chains"]["met"] is True
    assert s["chords"]["ratio"] == 60 / 30 and s["chords"]["met"] is True
    assert s["chords"]["ratio_per_round"] == [50 / 20, 70 / 40, 60 / 30]  # round by round (JSON)
    assert s["local"]["ratio"] == 1000 / 250 and s["local"]["met"] is False  # target 10 x TaskFlow
    assert s["chains"]["ackflow"]["cpu_per_1000"] == {"engine": 2.0}
    # scale-out: 2 + 2 against the same run's 1 + 1 chains
    assert s["scale2"]["peer_name"] == "ackflow 1 + 1" and s["scale2"]["ratio"] == 180 / 200
    text = report.markdown(raw(celery=True), s, plan.SMOKE)
    assert "| Celery 5.7.0 | 50 (50-50) | **4.00** | ≥ 2 met |" in text


def test_a_missing_peer_leaves_its_rows_without_figures() -> None:
    r = raw(celery=False)
    s = report.summarise(r, plan.SMOKE, scale=False)
    assert s["chains"]["ratio"] is None and s["chains"]["met"] is None
    assert s["chains"]["absent"] == "Celery: not installed (x)"
    text = report.markdown(r, s, plan.SMOKE)
    chain_row = next(line for line in text.splitlines() if line.startswith("| 2 ten-step chains, 1 engine"))
    assert "| Celery: not installed (x) | — | — |" in chain_row


def test_rounds_alternate_which_side_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(rounds, "_ackflow", lambda *a: order.append("ackflow"))
    monkeypatch.setattr(rounds, "_celery", lambda *a: order.append("celery"))
    monkeypatch.setattr(rounds, "_scaled", lambda *a: order.append(f"scale{a[-1]}"))
    monkeypatch.setattr(rounds.af, "local_serial", lambda n: order.append("local") or figs(1))
    monkeypatch.setattr(rounds, "once", lambda *a: {"idle": {}, "size": {}})
    from runner.ops.bench import taskflow_peer  # imports TaskFlow only when it runs

    monkeypatch.setattr(taskflow_peer, "serial", lambda n: order.append("taskflow") or figs(1))
    monkeypatch.setattr(rounds, "peer_versions", lambda wanted: {"celery": "5", "taskflow": "6"})
    rounds.run(Config(), plan.Sizes(rounds=2), ("celery", "taskflow"), scale=True)
    assert order == [
        *("ackflow", "celery", "local", "taskflow", "scale2", "scale4"),
        *("celery", "ackflow", "taskflow", "local", "scale2", "scale4"),
    ]


def test_the_meter_finds_children_and_counts_cpu() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert child.pid in cpu.with_descendants([os.getpid()])
        apart = cpu.Meter({"worker": [child.pid]})
        apart.start()  # the bench's own kind leaves out its children (the processes it measures)
        assert apart.kinds["client"] == [os.getpid()] and apart.kinds["worker"] == [child.pid]
        meter = cpu.Meter({"engine": [os.getpid()]}, services=False)
        meter.start()
        before = cpu.cpu_seconds(os.getpid())
        assert before is not None
        while cpu.cpu_seconds(os.getpid()) == before:  # burn CPU until the kernel has counted some
            sum(range(10_000))
        assert meter.seconds()["engine"] > 0
    finally:
        child.stdin.close()  # type: ignore[union-attr]
        child.wait(30)


def test_peers_option_names_the_peers_or_none() -> None:
    from click.testing import CliRunner

    from runner.ops.cli import load_plugins

    assert plan.parse_peers("celery, TaskFlow") == ("celery", "taskflow")
    assert plan.parse_peers("none") == () and plan.parse_peers("") == ()
    result = CliRunner().invoke(load_plugins(), ["bench", "--peers", "airflow"])
    assert result.exit_code == 2 and "unknown peer airflow" in result.output, result.output
