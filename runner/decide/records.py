"""The stored records of a run that decisions write and others read: a task's state, a
history entry, an error. The only module that knows their stored encoding.

Stored compact (short keys, msgpack arrays) because every task of every run has one: the
encoding is the Redis footprint, and runs in flight must keep reading across a release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from runner import caps, states
from runner.protocol import pack, unpack

NOT_STARTED = "NotStarted"  # the error type of a request a worker skipped: its run was failing
RUN_MARK = "~"  # stands for the run id inside event ids stored in a run's own history


@dataclass(frozen=True)
class TaskState:
    """One task's state in a run, as the engine keeps it (``tasks`` part, one field a task).

    Stored as a msgpack map with the short key in each field's metadata, absent fields
    (None) left out: the encoding every release so far has written and read, so runs in
    flight survive an upgrade and the Redis footprint is unchanged.
    """

    status: str = field(default=states.PENDING, metadata={"key": "s"})
    attempt: int = field(default=0, metadata={"key": "a"})
    scheduled_ms: int | None = field(default=None, metadata={"key": "t"})
    started_ms: int | None = field(default=None, metadata={"key": "st"})
    finished_ms: int | None = field(default=None, metadata={"key": "ft"})
    worker: str | None = field(default=None, metadata={"key": "w"})
    delivery: int | None = field(default=None, metadata={"key": "d"})  # the broker's count
    duration_ms: int | None = field(default=None, metadata={"key": "ms"})  # the body's run time
    error: dict[str, Any] | None = field(default=None, metadata={"key": "err"})
    revert_error: dict[str, Any] | None = field(default=None, metadata={"key": "rerr"})
    revert_started_ms: int | None = field(default=None, metadata={"key": "rt"})
    revert_finished_ms: int | None = field(default=None, metadata={"key": "rft"})
    # attempts that cost no try of the retry policy (lost leases, a retry of the run, ...)
    free_attempts: int | None = field(default=None, metadata={"key": "ra"})
    leases_lost: int | None = field(default=None, metadata={"key": "ll"})
    lease_until_ms: int | None = field(default=None, metadata={"key": "lk"})  # a long task's lease
    wait_limit_s: float | None = field(default=None, metadata={"key": "wl"})  # WAITING's timeout
    waiting_ms: int | None = field(default=None, metadata={"key": "wt"})
    retry_at_ms: int | None = field(default=None, metadata={"key": "retry_at"})  # backoff timer due
    # a map node: how many items, the next to start, how many done, a first attempt
    items: int | None = field(default=None, metadata={"key": "n"})
    next_item: int | None = field(default=None, metadata={"key": "next"})
    items_done: int | None = field(default=None, metadata={"key": "done"})
    fresh: bool | None = field(default=None, metadata={"key": "fresh"})
    # keys this release does not know (written by a newer one): kept as they were
    other: Mapping[str, Any] = field(default_factory=dict, metadata={"key": ""})

    @classmethod
    def decode(cls, raw: bytes | None) -> TaskState:
        """The stored state (None: never scheduled, PENDING)."""
        if raw is None:
            return _PENDING
        stored = unpack(raw)
        values = dict(_DEFAULTS)
        other = {}
        for k, v in stored.items():
            name = _BY_KEY.get(k)
            if name is None:
                other[k] = v
            else:
                values[name] = v
        values["other"] = other
        return _build(values)

    def encode(self) -> bytes:
        d = self.__dict__
        out = {key: v for name, key in _KEYS if (v := d[name]) is not None}
        out.update(self.other)
        return pack(out)

    def with_(self, **changes: Any) -> TaskState:
        """A copy with these fields changed (None removes one)."""
        if not changes.keys() <= _NAMES:
            return replace(self, **changes)  # raises the usual TypeError for the unknown name
        return _build({**self.__dict__, **changes})

    def ended(self) -> TaskState:
        """Without what only the attempt that just ended had: its lease, retry timer, wait limit."""
        return self.with_(lease_until_ms=None, retry_at_ms=None, wait_limit_s=None)


_KEYS = tuple((f.name, f.metadata["key"]) for f in fields(TaskState) if f.metadata["key"])
_BY_KEY = {key: name for name, key in _KEYS}
_NAMES = frozenset(f.name for f in fields(TaskState))
_DEFAULTS = {f.name: f.default for f in fields(TaskState) if f.name != "other"}
_PENDING = TaskState()


def _build(values: dict[str, Any]) -> TaskState:
    """A TaskState from every field's value, without the generated __init__: the engine
    builds several per event (this is ~10x faster than `dataclasses.replace`)."""
    state = object.__new__(TaskState)
    state.__dict__.update(values)
    return state


def error_dict(error: Mapping[str, Any]) -> dict[str, Any]:
    """An error as stored, each part cut to its cap whoever sent it (a worker, an outside
    system, a forged event): it is stored three times (the task, the history, the run)."""
    return caps.cap_error(error)


def history_record(
    at: int,
    lag: int | None,
    event: str,
    kind: str,
    scope: str,
    old: str,
    new: str,
    attempt: int,
    extra: dict[str, Any],
) -> bytes:
    """A history entry as stored: a compact array (see `history_entry`), ``event`` with the
    run id replaced by `RUN_MARK`."""
    return pack([at, lag, event, kind, scope, old, new, attempt, extra or None])


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
