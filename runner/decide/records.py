"""The stored records of a run that decisions write and others read: a task's state, a
history entry, an error, a running task's progress. The only module that knows their stored
encoding.

Stored compact (short keys, msgpack arrays) because every task of every run has one: the
encoding is the Redis footprint, and runs in flight must keep reading across a release.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple, cast, get_type_hints

from runner import caps, states
from runner.protocol import pack, unpack

NOT_STARTED = "NotStarted"  # the error type of a request a worker skipped: its run was failing
RUN_MARK = "~"  # stands for the run id inside event ids stored in a run's own history

_NO_OTHER: Mapping[str, Any] = MappingProxyType({})


class TaskState(NamedTuple):
    """One task's state in a run, as the engine keeps it (``tasks`` part, one field a task).

    Stored as a msgpack map with the short key annotated on each field, absent fields (None)
    left out: the encoding every release so far has written and read, so runs in flight
    survive an upgrade and the Redis footprint is unchanged.

    Immutable; `with_` makes a changed copy. A `NamedTuple` rather than a dataclass because
    the engine builds, decodes and encodes several per event: here that costs a few tuple
    operations, not a generated ``__init__`` setting every field.
    """

    status: Annotated[str, "s"] = states.PENDING
    attempt: Annotated[int, "a"] = 0
    scheduled_ms: Annotated[int | None, "t"] = None
    started_ms: Annotated[int | None, "st"] = None
    finished_ms: Annotated[int | None, "ft"] = None
    worker: Annotated[str | None, "w"] = None
    delivery: Annotated[int | None, "d"] = None  # the broker's count
    duration_ms: Annotated[int | None, "ms"] = None  # the body's run time
    error: Annotated[dict[str, Any] | None, "err"] = None
    revert_error: Annotated[dict[str, Any] | None, "rerr"] = None
    revert_started_ms: Annotated[int | None, "rt"] = None
    revert_finished_ms: Annotated[int | None, "rft"] = None
    # attempts that cost no try of the retry policy (lost leases, a retry of the run, ...)
    free_attempts: Annotated[int | None, "ra"] = None
    leases_lost: Annotated[int | None, "ll"] = None
    lease_until_ms: Annotated[int | None, "lk"] = None  # a long task's lease
    wait_limit_s: Annotated[float | None, "wl"] = None  # WAITING's timeout
    waiting_ms: Annotated[int | None, "wt"] = None
    retry_at_ms: Annotated[int | None, "retry_at"] = None  # backoff timer due
    # a map node: how many items, the next to start, how many done, a first attempt
    items: Annotated[int | None, "n"] = None
    next_item: Annotated[int | None, "next"] = None
    items_done: Annotated[int | None, "done"] = None
    fresh: Annotated[bool | None, "fresh"] = None
    # a revert handler sent again because its worker's lease expired: how many times
    revert_sends: Annotated[int | None, "rs"] = None
    child: Annotated[str | None, "ch"] = None  # the child run its last attempt started
    # keys this release does not know (written by a newer one): kept as they were; last
    other: Mapping[str, Any] = _NO_OTHER

    @classmethod
    def decode(cls, raw: bytes | None) -> TaskState:
        """The stored state (None: never scheduled, PENDING)."""
        if raw is None:
            return _PENDING
        values = list(_DEFAULTS)
        other = None
        for k, v in unpack(raw).items():
            i = _INDEX_OF_KEY.get(k)
            if i is None:
                if other is None:
                    other = values[_OTHER] = {}
                other[k] = v
            else:
                values[i] = v
        return _new(cls, values)

    def encode(self) -> bytes:
        out = _stored(self)
        if self.other:
            out.update(self.other)
        return pack(out)

    def with_(self, **changes: Any) -> TaskState:
        """A copy with these fields changed (None removes one)."""
        return _new(TaskState, _changed(list(self), changes))

    def ended(self, **changes: Any) -> TaskState:
        """Without what only the attempt that just ended had: its lease, retry timer, wait
        limit; with ``changes`` made in the same copy."""
        values = list(self)
        for i in _ATTEMPT_ONLY:
            values[i] = None
        return _new(TaskState, _changed(values, changes))


_new = tuple.__new__  # a TaskState from every field's value, in order
_HINTS = get_type_hints(TaskState, include_extras=True)
_KEYS = tuple(_HINTS[name].__metadata__[0] for name in TaskState._fields[:-1])  # stored keys
_OTHER = len(_KEYS)  # `other`'s index: the last field
_INDEX_OF_KEY = {key: i for i, key in enumerate(_KEYS)}
_INDEX_OF_NAME = {name: i for i, name in enumerate(TaskState._fields)}
_DEFAULTS = tuple(TaskState._field_defaults[name] for name in TaskState._fields)
_ATTEMPT_ONLY = tuple(_INDEX_OF_NAME[n] for n in ("lease_until_ms", "retry_at_ms", "wait_limit_s"))
_PENDING = TaskState()
assert TaskState._fields[_OTHER] == "other" and len(set(_KEYS)) == _OTHER


def _changed(values: list[Any], changes: Mapping[str, Any]) -> list[Any]:
    for name, v in changes.items():
        i = _INDEX_OF_NAME.get(name)
        if i is None:
            raise TypeError(f"TaskState has no field {name!r}")
        values[i] = v
    return values


def _map_function() -> Callable[[TaskState], dict[str, Any]]:
    """The stored map of a state's known fields, those not None under their keys: straight-
    line code generated from the keys (as `NamedTuple` generates its constructor), since
    the engine encodes states on every event and a loop over all the fields costs twice as
    much as these tests."""
    names = [f"v{i}" for i in range(len(_KEYS))]
    lines = ["def stored(state):", f"    {', '.join(names)}, _other = state", "    out = {}"]
    lines += [f"    if {n} is not None: out[{key!r}] = {n}" for n, key in zip(names, _KEYS, strict=True)]
    lines.append("    return out")
    scope: dict[str, Any] = {}
    exec("\n".join(lines), scope)  # noqa: S102 - our own source, built from the keys above
    return cast(Callable[[TaskState], dict[str, Any]], scope["stored"])


_stored = _map_function()


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


class TaskProgress(NamedTuple):
    """A running task's last reported progress, as its heartbeat stores it (``leases`` part,
    field `keys.progress_field`): which attempt reported it, how far (0..1), what it said,
    and when. Written by the worker, read by the client; stored as a msgpack map with short
    keys, like `TaskState`."""

    attempt: int
    fraction: float
    message: str = ""
    at_ms: int = 0

    def encode(self) -> bytes:
        return pack({"a": self.attempt, "f": self.fraction, "m": self.message, "t": self.at_ms})

    @classmethod
    def decode(cls, raw: bytes) -> TaskProgress:
        p = unpack(raw)
        return cls(int(p.get("a", 0)), float(p["f"]), str(p.get("m", "")), int(p.get("t", 0)))
