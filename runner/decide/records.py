"""The stored records of a run that decisions write and others read: a task's state, a
history entry, an error. The only module that knows their stored encoding.

Stored compact (short keys, msgpack arrays) because every task of every run has one: the
encoding is the Redis footprint, and runs in flight must keep reading across a release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner import caps, states
from runner.protocol import unpack

NOT_STARTED = "NotStarted"  # the error type of a request a worker skipped: its run was failing
RUN_MARK = "~"  # stands for the run id inside event ids stored in a run's own history


def task_state(raw: bytes | None) -> dict[str, Any]:
    return {"s": states.PENDING, "a": 0} if raw is None else dict(unpack(raw))


def error_dict(error: Mapping[str, Any]) -> dict[str, Any]:
    """An error as stored, each part cut to its cap whoever sent it (a worker, an outside
    system, a forged event): it is stored three times (the task, the history, the run)."""
    return caps.cap_error(error)


def history_entry(raw: bytes, run_id: str) -> dict[str, Any]:
    """A stored history entry as a dict: at, event, kind, scope, from, to, attempt, extras
    (``t``: when it was applied). Entries are compact arrays; older ones were dicts."""
    d = unpack(raw)
    if isinstance(d, dict):
        return dict(d)
    at, lag, event, kind, scope, old, new, attempt, extra = d
    out = {"at": at, "event": event.replace(RUN_MARK, run_id, 1), "kind": kind, "scope": scope}
    out.update({"from": old, "to": new, "attempt": attempt}, **(extra or {}))
    if lag is not None:
        out["t"] = at + lag
    return out
