"""The messages engines and workers exchange, and their msgpack codec.

Every message is a frozen dataclass with a schema version and a deterministic id derived
from what it is about, so a duplicate is recognised by its id alone (DESIGN §3). Decoding is
strict and total: anything that is not msgpack, names an unknown kind, lacks a field or has
a field of another type raises one `DecodeError` whose reason goes with the message to the
dead-letter queue.
"""

from __future__ import annotations

import math
import reprlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

from runner.errors import DecodeError, EncodeError

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/x-msgpack"

# Event kinds, consumed by engines.
RUN_SUBMIT = "run.submit"
TASK_STARTED = "task.started"
TASK_SUCCEEDED = "task.succeeded"
TASK_FAILED = "task.failed"
TASK_LEASED = "task.leased"  # a long task's worker acknowledged its request early: lease it
TASK_WAITING = "task.waiting"  # a lazy task deferred: an outside system completes it later
TASK_COMPLETE = "task.complete"  # that outside system's result (or error), with the token
TASK_REVERTED = "task.reverted"
TASK_REVERT_FAILED = "task.revert_failed"
TIMER_FIRED = "timer.fired"
RUN_CANCEL = "run.cancel"
RUN_PAUSE = "run.pause"
RUN_RESUME = "run.resume"
RUN_RETRY = "run.retry"
CONTROL_KINDS = (RUN_CANCEL, RUN_PAUSE, RUN_RESUME, RUN_RETRY)
# Task requests, consumed by workers.
TASK_REQUEST = "task.request"
MODE_RUN = "run"
MODE_REVERT = "revert"

# Timer purposes (the body of a timer.fired event).
TIMER_RETRY = "retry"  # backoff over: schedule the next attempt
TIMER_TIMEOUT = "timeout"  # the attempt ran out of time
TIMER_LEASE = "lease"  # check a long task's lease
TIMER_DEADLINE = "deadline"  # the run ran out of time

# An optional body field of worker events: the run's creation time in ms, from its task
# request. It lets an engine tell a run that vanished while active (lost) from one that
# expired (`runner.engine.durability`).
CREATED_FIELD = "run_created"

# Required body fields per event kind, with their types.
_EVENT_BODY: dict[str, dict[str, type | tuple[type, ...]]] = {
    RUN_SUBMIT: {"flow": str, "spec": dict, "inputs": dict},
    TASK_STARTED: {"worker": str},
    TASK_SUCCEEDED: {"values": dict, "worker": str},
    TASK_FAILED: {"error": dict, "worker": str},
    TASK_LEASED: {"worker": str},
    TASK_WAITING: {"worker": str},
    TASK_COMPLETE: {"by": str},
    TASK_REVERTED: {"worker": str},
    TASK_REVERT_FAILED: {"error": dict, "worker": str},
    TIMER_FIRED: {"purpose": str},
    RUN_CANCEL: {"by": str},
    RUN_PAUSE: {"by": str},
    RUN_RESUME: {"by": str},
    RUN_RETRY: {"by": str},
}
EVENT_KINDS = frozenset(_EVENT_BODY)


# The wall clock every transition reads. Replaceable (`set_wall_clock`) so that a caller that
# owns time — the deterministic simulator in tests/sim — can drive timers, leases and
# timeouts without real waits; production never replaces it.
_wall_clock: Callable[[], float] = time.time


def now_ms() -> int:
    return int(_wall_clock() * 1000)


def set_wall_clock(clock: Callable[[], float] | None) -> Callable[[], float]:
    """Read the wall time from ``clock`` (seconds, as `time.time`; None: the real clock);
    returns the clock replaced."""
    global _wall_clock
    before, _wall_clock = _wall_clock, clock or time.time
    return before


def submit_id(run_id: str) -> str:
    return f"submit:{run_id}"


def started_id(run_id: str, task: str, attempt: int) -> str:
    return f"started:{run_id}:{task}:{attempt}"


def result_id(run_id: str, task: str, attempt: int) -> str:
    """One id for an attempt's result, success or failure: only the first one applies."""
    return f"result:{run_id}:{task}:{attempt}"


def request_id(run_id: str, task: str, attempt: int) -> str:
    return f"req:{run_id}:{task}:{attempt}"


def waiting_id(run_id: str, task: str, attempt: int) -> str:
    """The worker's outcome of a lazy attempt: shares the result id, so only one applies."""
    return result_id(run_id, task, attempt)


def leased_id(run_id: str, task: str, attempt: int) -> str:
    return f"leased:{run_id}:{task}:{attempt}"


def revert_leased_id(request_id: str, delivery: int) -> str:
    """The lease of a revert handler: never taken for a duplicate of its attempt's body's
    lease, and new for each request sent (a revert whose lease expired is sent again, at the
    same attempt) and each delivery of it."""
    return f"revleased:{request_id}:{delivery}"


def revert_request_id(run_id: str, task: str, attempt: int) -> str:
    return f"revreq:{run_id}:{task}:{attempt}"


def revert_result_id(run_id: str, task: str, attempt: int) -> str:
    """One id for a revert's outcome, done or failed: only the first one applies."""
    return f"reverted:{run_id}:{task}:{attempt}"


def timer_id(purpose: str, run_id: str, task: str = "", attempt: int = 0, extra: str = "") -> str:
    tid = f"timer:{purpose}:{run_id}:{task}:{attempt}"
    return f"{tid}:{extra}" if extra else tid


@dataclass(frozen=True)
class Event:
    """A message to the engines: something happened to a run."""

    kind: str
    id: str
    run_id: str
    task: str = ""
    attempt: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    at_ms: int = 0


@dataclass(frozen=True)
class TaskRequest:
    """A message to the workers: run one attempt of one task with these arguments."""

    id: str
    run_id: str
    task: str
    fn: str
    attempt: int
    args: dict[str, Any]
    provides: list[str]
    unpack: bool = False  # provides names a sequence/dict returned by the task
    at_ms: int = 0
    mode: str = MODE_RUN  # MODE_REVERT: call the task's revert handler with ``result``
    result: Any = None  # revert mode: what the task returned
    run_created: int = 0  # the run's creation time (ms): lazy tasks' tokens are bound to it
    failure: dict[str, Any] | None = None  # revert mode, of a task that failed: its error
    # The attempt's time limit (0: none). The engine's timer enforces it for every task; a
    # worker also cancels an async task at its limit, which a thread cannot be.
    timeout_s: float = 0.0

    @property
    def idempotency_key(self) -> tuple[str, str, int]:
        """The same for every execution of this attempt: guard side effects with it (G2)."""
        return (self.run_id, self.task, self.attempt)


Message = Event | TaskRequest
_REQUIRED: Any = object()  # `_field` without a default: the field must be present


def pack(value: Any) -> bytes:
    """Encode plain data as msgpack; anything else is an `EncodeError` naming its type."""
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as e:
        raise EncodeError(f"cannot encode as msgpack: {e}") from e


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode(msg: Message) -> bytes:
    if isinstance(msg, TaskRequest):
        return pack(
            {
                "v": SCHEMA_VERSION,
                "kind": TASK_REQUEST,
                "id": msg.id,
                "run": msg.run_id,
                "task": msg.task,
                "fn": msg.fn,
                "attempt": msg.attempt,
                "args": msg.args,
                "provides": msg.provides,
                "unpack": msg.unpack,
                "at": msg.at_ms,
                "mode": msg.mode,
                "result": msg.result,
                "created": msg.run_created,
                **({"failure": msg.failure} if msg.failure is not None else {}),
                "timeout": msg.timeout_s,
            }
        )
    return pack(
        {
            "v": SCHEMA_VERSION,
            "kind": msg.kind,
            "id": msg.id,
            "run": msg.run_id,
            "task": msg.task,
            "attempt": msg.attempt,
            "body": msg.body,
            "at": msg.at_ms,
        }
    )


_NUMBER = (int, float)
# Optional body fields: their types when present (None stands for absent). The engine reads
# them as these types; a duration or note of another type would reach the store and pages.
_EVENT_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "ms": int,
    "delivery": int,
    "timeout_s": _NUMBER,
    "note": str,
    "reason": str,
    "error": dict,
    "values": dict,
    "mode": str,  # task.leased: MODE_REVERT when the lease is for a revert handler
}
# Fields whose maps are keyed by names (arguments, provided values): str keys only.
_NAME_MAPS = frozenset({"args", "values", "inputs"})
_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 60
_shown.maxlevel = 3


def _clip(text: str, size: int = 200) -> str:
    return text if len(text) <= size else text[:size] + "..."


def _show(value: Any) -> str:
    """A short repr for a reason: reasons travel in a message header to the dead-letter queue."""
    return _shown.repr(value)


def _has_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    """`isinstance`, except that a bool is not a number (msgpack keeps them apart)."""
    return isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, _NUMBER))


def _field(
    d: dict[Any, Any],
    name: str,
    kind: type | tuple[type, ...],
    *,
    default: Any = _REQUIRED,
) -> Any:
    """``d[name]`` if it has type ``kind`` (a bool is not an int); ``default`` when absent or None."""
    if name not in d and default is _REQUIRED:
        raise DecodeError(f"missing field {name!r}")
    value: Any = d.get(name)
    if value is None and default is not _REQUIRED:
        return default
    if not _has_type(value, kind):
        raise DecodeError(f"field {name!r} has type {type(value).__name__}")
    if kind in (int, _NUMBER) and not (value >= 0 and math.isfinite(value)):
        raise DecodeError(f"field {name!r} is {'negative' if value < 0 else value}")
    if name in _NAME_MAPS and not all(isinstance(k, str) for k in value):
        raise DecodeError(f"field {name!r} must map strings (names) to values")
    return value


def _run_id(raw: dict[Any, Any]) -> str:
    run_id: str = _field(raw, "run", str)
    if not run_id:
        raise DecodeError("field 'run' is empty")
    return run_id


def _request(raw: dict[Any, Any]) -> TaskRequest:
    provides = _field(raw, "provides", list)
    if not all(isinstance(p, str) for p in provides):
        raise DecodeError("field 'provides' must be a list of strings")
    mode = _field(raw, "mode", str, default=MODE_RUN)
    if mode not in (MODE_RUN, MODE_REVERT):
        raise DecodeError(f"unknown request mode {_show(mode)}")
    return TaskRequest(
        id=_field(raw, "id", str),
        run_id=_run_id(raw),
        task=_field(raw, "task", str),
        fn=_field(raw, "fn", str),
        attempt=_field(raw, "attempt", int),
        args=_field(raw, "args", dict),
        provides=provides,
        unpack=_field(raw, "unpack", bool, default=False),
        at_ms=_field(raw, "at", int),
        mode=mode,
        result=raw.get("result"),
        run_created=_field(raw, "created", int, default=0),
        failure=_field(raw, "failure", dict, default=None),
        timeout_s=float(_field(raw, "timeout", _NUMBER, default=0.0)),
    )


def _event(raw: dict[Any, Any]) -> Event:
    kind = _field(raw, "kind", str)
    if kind not in _EVENT_BODY:
        raise DecodeError(f"unknown message kind {_show(kind)}")
    body = _field(raw, "body", dict)
    if not all(isinstance(k, str) for k in body):
        raise DecodeError("field 'body' must map strings to values")
    for name, ftype in _EVENT_BODY[kind].items():
        _field(body, name, ftype)
    for name, ftype in _EVENT_OPTIONAL.items():
        if name not in _EVENT_BODY[kind]:
            _field(body, name, ftype, default=None)
    return Event(
        kind=kind,
        id=_field(raw, "id", str),
        run_id=_run_id(raw),
        task=_field(raw, "task", str),
        attempt=_field(raw, "attempt", int),
        body=body,
        at_ms=_field(raw, "at", int),
    )


def decode(data: bytes) -> Message:
    """Decode and validate one message body; every failure is a `DecodeError` with a reason.

    Total by construction: every field's type is checked before it is used, and anything
    else that goes wrong is still a `DecodeError` (the cause chained), because a consumer
    that received any other exception would die on the message, and so would each one the
    broker handed it to next.
    """
    try:
        raw = unpack(data)
    except Exception as e:  # msgpack raises several unrelated types
        raise DecodeError(f"body is not msgpack: {type(e).__name__}: {_clip(str(e))}") from e
    try:
        if not isinstance(raw, dict):
            raise DecodeError(f"body is a msgpack {type(raw).__name__}, not a map")
        version = raw.get("v")
        if type(version) is not int or version != SCHEMA_VERSION:
            raise DecodeError(f"unsupported schema version {_show(version)} (expected {SCHEMA_VERSION})")
        if raw.get("kind") == TASK_REQUEST:
            return _request(raw)
        return _event(raw)
    except DecodeError:
        raise
    except Exception as e:  # a gap in the checks above: still this message's fault alone
        raise DecodeError(f"invalid message: {type(e).__name__}: {_clip(str(e))}") from e


M = TypeVar("M", Event, TaskRequest)


def decode_delivery(content_type: str | None, body: bytes, expect: type[M], queue: str) -> M:
    """Check a delivery's content type, decode its body and check it is an ``expect`` (what
    ``queue``, a description like "the engine queue", takes); a `DecodeError` otherwise.

    The one preamble of the engine and the worker, so neither trusts a body the other would
    reject (a pickle sent with its content type, an event on a task queue)."""
    if content_type and content_type != CONTENT_TYPE:
        raise DecodeError(f"content type {_clip(content_type)!r} is not {CONTENT_TYPE}")
    msg = decode(body)
    if not isinstance(msg, expect):
        what = "events" if expect is Event else "task requests"
        got = msg.kind if isinstance(msg, Event) else TASK_REQUEST
        raise DecodeError(f"{queue} takes {what}, not {got}")
    return msg
