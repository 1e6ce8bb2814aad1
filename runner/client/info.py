"""What the client hands back: a run's status, its tasks, its history entries.

Plain frozen records built from the store by `runner.client.client.Client`, shared with the
completion path and the operator surfaces, so that none of them needs the client itself.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from runner import states


@dataclass(frozen=True)
class TaskInfo:
    name: str
    status: str
    attempt: int
    worker: str = ""
    duration_ms: int | None = None
    error: dict[str, Any] | None = None
    progress: tuple[float, str] | None = None  # the running attempt's last report
    retry_at_ms: int | None = None  # FAILED, with another attempt due at this time
    revert_error: dict[str, Any] | None = None  # its revert handler failed
    child: str | None = None  # the child run its last attempt started (`start_child`)
    started_ms: int | None = None
    finished_ms: int | None = None
    waiting_ms: int | None = None  # when it began waiting (a lazy task, a child run)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    flow: str = ""
    created_ms: int = 0
    finished_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    parent: tuple[str, str, int] | None = None  # a child run's (parent run, task, attempt)
    inputs: dict[str, Any] = field(default_factory=dict)
    control: dict[str, Any] | None = None  # the last cancel/pause/resume/retry: action, by, reason, at

    @property
    def done(self) -> bool:
        return self.status in states.RUN_TERMINAL


@dataclass(frozen=True)
class HistoryEntry:
    """One applied transition (or a refused event, with ``note``) of a run."""

    at_ms: int
    event: str
    kind: str
    scope: str  # "run" or a task name
    old: str
    new: str
    attempt: int
    extra: dict[str, Any]

    def describe(self) -> str:
        what = "run" if self.scope == "run" else f"task {self.scope}"
        if "retry" in self.extra:  # a flow with a retry controller (runner.decide.scopes)
            what = f"flow {self.scope} [{self.extra['retry']}]"
        att = f" (attempt {self.attempt})" if self.attempt and self.scope != "run" else ""
        line = (
            f"{what}{att}: {self.old} -> {self.new}" if self.old != self.new else f"{what}{att}: {self.new}"
        )
        if "error_type" in self.extra:
            message = self.extra.get("error", "")
            line += (
                f"  [{self.extra['error_type']}: {message}]" if message else f"  [{self.extra['error_type']}]"
            )
        if "note" in self.extra:
            line += f"  ({self.extra['note']})"
        if "value" in self.extra:
            line += f"  value={self.extra['value']!r}"
        if self.extra.get("redelivered"):
            line += "  (redelivered event)"
        return line


def who() -> str:
    """Who sent a control or completion request, for the run's history."""
    return f"{socket.gethostname()}:{os.getpid()}"
