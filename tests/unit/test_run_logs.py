"""What a worker and an engine log about tasks and runs (issue 19, item 5), in local mode: a line
per task received and finished (with its duration), a failed attempt at WARNING with its
message and no traceback, and a run's final failure once, at ERROR, with the traceback."""

from __future__ import annotations

import logging

import pytest

from runner import flow, task
from runner.define.retry import Retry
from runner.define.tasks import Registry
from runner.local import LocalRuntime
from tests.helpers import flows

reg = Registry()
tries: list[int] = []


@task(provides="out", registry=reg, retry=Retry(attempts=2, delay=0))
def flaky_twice(x: int) -> int:
    tries.append(x)
    raise KeyError(f"no such thing {x}")


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("ackflow.worker.tasks", "ackflow.engine.runs"):  # `ackflow run` may have quieted them
        caplog.set_level(logging.INFO, logger=name)
    return caplog


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def test_each_task_is_logged_when_received_and_when_it_finishes_with_its_duration(
    records: pytest.LogCaptureFixture,
) -> None:
    with LocalRuntime(concurrency=2) as rt:
        info = rt.run(flows.chain(2), {"v0": 1}, timeout_s=60)
    assert info.status == "SUCCESS"
    tasks = _lines(records, "ackflow.worker.tasks")
    received = [m for lvl, m in tasks if lvl == logging.INFO and " received (inc attempt 1 of run " in m]
    finished = [m for lvl, m in tasks if lvl == logging.INFO and " succeeded in " in m and m.endswith(" s")]
    assert len(received) == 2 and len(finished) == 2, tasks
    runs = _lines(records, "ackflow.engine.runs")
    assert runs == [(logging.INFO, f"run {info.run_id} succeeded")]


def test_failed_attempts_are_warnings_and_the_runs_final_failure_is_one_error_with_the_traceback(
    records: pytest.LogCaptureFixture,
) -> None:
    tries.clear()
    with LocalRuntime(concurrency=1, registry=reg) as rt:
        info = rt.run(flow.linear("flaky", flaky_twice).compile(reg), {"x": 7}, timeout_s=60)
    assert info.status == "FAILED" and tries == [7, 7]
    tasks = _lines(records, "ackflow.worker.tasks")
    warned = [m for lvl, m in tasks if lvl == logging.WARNING]
    assert len(warned) == 2, tasks
    assert all(" failed in " in m and m.endswith("KeyError: 'no such thing 7'") for m in warned), warned
    assert not any("Traceback" in m for _, m in tasks)
    errors = [m for lvl, m in _lines(records, "ackflow.engine.runs") if lvl == logging.ERROR]
    assert len(errors) == 1, errors
    first, _, traceback = errors[0].partition("\n")
    assert first == f"run {info.run_id} failed: task 'flaky_twice' attempt 2: KeyError: 'no such thing 7'"
    assert traceback.startswith("Traceback (most recent call last):")
    assert "raise KeyError" in traceback
