"""What an engine logs when a run ends: a line per finished run, a failed one's at ERROR with
the error that failed it and its traceback.

Workers log each failed attempt at WARNING with its message only: most are retried, and only
the engine knows that an attempt's failure was the run's last (retries spent, nothing to
compensate with) — so the traceback is logged once, here, where it matters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from runner import protocol, states
from runner.protocol import Event
from runner.store import Commit, Store, keys

log = logging.getLogger("ackflow.engine.runs")


def log_run_end(store: Store, event: Event, commit: Commit) -> None:
    """Log the run's end if ``commit`` ended it; never raises (a log line must not cost the event)."""
    change = commit.status_change
    if not change or change[1] not in states.RUN_TERMINAL:
        return
    try:
        _log(store, event.run_id, change[1], commit)
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("run %s ended %s (its error could not be read)", event.run_id, change[1])


def _log(store: Store, run_id: str, status: str, commit: Commit) -> None:
    if status == states.SUCCESS:
        log.info("run %s succeeded", run_id)
        return
    if status == states.CANCELLED:
        log.info("run %s cancelled", run_id)
        return
    error = _error(store, run_id, commit)
    what = "failed" if status == states.FAILED else "failed and was reverted"
    where = f"task {error.get('task')!r} attempt {error.get('attempt')}: " if error.get("task") else ""
    tb = str(error.get("traceback") or "").rstrip()
    log.error(
        "run %s %s: %s%s: %s%s",
        run_id,
        what,
        where,
        error.get("type", "unknown error"),
        error.get("message", ""),
        "\n" + tb if tb else "",
    )


def _error(store: Store, run_id: str, commit: Commit) -> Mapping[str, Any]:
    """The run's error: written by this commit (it failed the run), else stored earlier (a
    failure that compensation followed)."""
    raw = commit.writes.get(keys.META, {}).get("error")
    if raw is None:
        raw = store.read(run_id, {keys.META: ["error"]})[keys.META][0]
    value = protocol.unpack(raw) if raw else {}
    return value if isinstance(value, Mapping) else {}
