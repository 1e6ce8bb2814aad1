"""`ackflow bench` end to end at its smallest (`SMOKE`: every workload, a few steps each)
against the real RabbitMQ and Redis: the table has every row, a peer that is not installed
is reported in its row (not a crash), and the JSON holds the same figures. No timed
assertion: the figures are whatever this machine gives; only their presence is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runner.config import Config
from runner.ops import bench
from runner.ops.bench import plan

pytestmark = pytest.mark.services


def rows(text: str, first_cell: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell}")
    ]


def test_the_smallest_bench_reports_every_workload_and_an_absent_peer(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    really = plan.installed
    monkeypatch.setattr(plan, "installed", lambda module: module != "celery" and really(module))
    out = tmp_path / "bench.json"

    text = bench.main(config, bench.SMOKE, ("celery", "taskflow"), json_path=str(out))

    assert text in capsys.readouterr().out  # printed, not only returned
    [chains] = rows(text, "2 ten-step chains, 1 engine")
    [chords] = rows(text, "1 chords of 3 + 1")
    [local] = rows(text, "2 ten-step chains one at a time")
    [scale] = rows(text, "2 ten-step chains, 2 engines")
    for row in (chains, chords):  # Celery absent: said so, no figure, no ratio
        assert row[2] == "Celery: not installed (pip install -e '.[bench]')", row
        assert row[3:5] == ["—", "—"], row
        assert re.match(r"[\d,]+ \(", row[1]), row  # ackflow still ran
    if really("taskflow"):
        assert local[2].startswith("TaskFlow 6"), local
        assert re.match(r"\*\*\d+\.\d\d\*\*", local[4]), local
    else:
        assert local[2].startswith("TaskFlow: not installed"), local
    assert scale[2] == "ackflow 1 + 1" and re.match(r"\*\*\d+\.\d\d\*\*", scale[4]), scale
    # CPU per 1,000 steps: the engine and the worker have a figure for the distributed rows
    [header] = [line for line in text.splitlines() if line.startswith("| workload | system |")]
    cols = [c.strip() for c in header.strip("|").split("|")]
    [cpu_chains] = [r for r in rows(text, "chains") if r[1] == "ackflow"]
    assert re.match(r"\d+\.\d\d", cpu_chains[cols.index("engine")]), cpu_chains
    assert re.match(r"\d+\.\d\d", cpu_chains[cols.index("worker")]), cpu_chains
    assert [r[0] for r in rows(text, "chain ") + rows(text, "map ")] == ["chain", "map"]
    assert "Idle latency of one 10-step chain" in text
    # how the shared Redis persists is said once: the figures depend on it
    assert re.search(r"^Redis: appendonly (yes|no), appendfsync \w+: (not )?durable", text, re.M), text[-500:]

    report = json.loads(out.read_text())
    assert set(report["workloads"]) == {"chains", "chords", "local", "scale2"}
    assert report["workloads"]["chains"]["absent"].startswith("Celery: not installed")
    assert report["workloads"]["chains"]["ratio"] is None
    assert len(report["workloads"]["chains"]["ackflow"]["steps_per_s"]) == 1
    assert report["peers"]["celery"].startswith("not installed")
    assert report["redis"].startswith("appendonly "), report["redis"]
    assert set(report["size"]) == {"chain", "map"}
    assert report["size"]["chain"]["sizes"]["5"]["bytes_per_task"] > 0


def test_the_celery_peer_runs_chains_and_chords(config: Config) -> None:
    pytest.importorskip("celery", reason="the bench extra is not installed (pip install -e '.[bench]')")
    from runner.ops.bench.celery_peer import CeleryPeer

    peer = CeleryPeer(config)
    try:
        peer.start()
        chains, chords = peer.chains(2), peer.chords(1, 3)
    finally:
        peer.close()
    assert chains["steps_per_s"] > 0 and chords["steps_per_s"] > 0
    assert chains["cpu_per_1000"].keys() >= {"celery worker", "client"}
