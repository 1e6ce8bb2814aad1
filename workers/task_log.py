"""A worker's line per task received and finished (Celery's "received" / "succeeded in"), on
a logger of their own so that `ackflow run`, which prints each task's progress itself, can
leave them out. A failed attempt is a WARNING with its error (most are retried: the engine
logs a run's final failure, with the traceback)."""

from __future__ import annotations

import logging

from runner import protocol
from runner.protocol import Event, TaskRequest

log = logging.getLogger("ackflow.worker.tasks")

# How a line says each outcome (the last word of its result event's kind).
_SAID = {"waiting": "is waiting (lazy, or a child run) after", "revert_failed": "revert failed"}


def received(req: TaskRequest) -> None:
    log.info("task %s received (%s of run %s)", req.task, _what(req), req.run_id)


def not_started(req: TaskRequest) -> None:
    log.info("task %s not started: its run or attempt moved on", req.task)


def finished(req: TaskRequest, result: Event, took_s: float) -> None:
    outcome = result.kind.rpartition(".")[2]
    if "error" in result.body:  # failed, or its revert did
        error = result.body["error"]
        log.warning(
            "task %s %s in %.3f s: %s: %s",
            req.task,
            _SAID.get(outcome, outcome),
            took_s,
            error["type"],
            error["message"],
        )
    else:
        log.info("task %s %s in %.3f s", req.task, _SAID.get(outcome, outcome), took_s)


def _what(req: TaskRequest) -> str:
    """``fn`` attempt 2, or the revert of ``fn``: how a line names what runs."""
    if req.mode == protocol.MODE_REVERT:
        return f"revert of {req.fn}"
    return f"{req.fn} attempt {req.attempt}"
