"""Run one task request and turn its outcome into a result event.

Whatever the task does — returns, raises, returns something msgpack cannot carry or that is
too large — the outcome is one event: ``task.succeeded`` or ``task.failed`` with the
exception's type, message and traceback. The event id is the same for every execution of an
attempt, so only the first result of an attempt is ever applied.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner import caps, protocol
from runner.decide.records import NOT_STARTED
from runner.define.child import ChildRun
from runner.define.compile import compile_flow
from runner.define.context import TaskContext, reset_current, set_current
from runner.define.failure import Failure
from runner.define.lazy import Deferred
from runner.define.spec import FlowSpec, validate_inputs
from runner.define.tasks import FAILURE_PARAM, REGISTRY, Registry, TaskDef
from runner.errors import EncodeError, PayloadTooLargeError, UnknownTaskError
from runner.protocol import CREATED_FIELD, Event, TaskRequest


def _types(e: BaseException) -> list[str]:
    """The exception's class and its bases, by name, for retry policies' ``on=``."""
    return [c.__name__ for c in type(e).__mro__ if c not in (object, BaseException)]


def _outcome(
    req: TaskRequest, kind: str, make_id: Callable[[str, str, int], str], body: dict[str, Any]
) -> Event:
    """The one event that reports how an attempt (or its revert) went."""
    if req.run_created:  # lets an engine that finds the run gone tell "lost" from "expired"
        body = {**body, CREATED_FIELD: req.run_created}
    return Event(
        kind=kind,
        id=make_id(req.run_id, req.task, req.attempt),
        run_id=req.run_id,
        task=req.task,
        attempt=req.attempt,
        at_ms=protocol.now_ms(),
        body=body,
    )


def _failed(
    req: TaskRequest, worker: str, etype: str, message: str, tb: str = "", types: list[str] | None = None
) -> Event:
    revert = req.mode == protocol.MODE_REVERT
    error = caps.cap_error({"type": etype, "message": message, "traceback": tb, "types": types or [etype]})
    return _outcome(
        req,
        protocol.TASK_REVERT_FAILED if revert else protocol.TASK_FAILED,
        protocol.revert_result_id if revert else protocol.result_id,
        {"worker": worker, "error": error},
    )


def poison_failure(req: TaskRequest, worker: str, reason: str) -> Event:
    return _failed(req, worker, "PoisonMessage", reason)


def not_started(req: TaskRequest, worker: str, reason: str, paused: bool = False) -> Event:
    """The report of a request skipped because its run is failing or paused (``paused``):
    the attempt ends without effect. It has the attempt's result id, so a result of the same
    attempt from another delivery and this report can never both apply."""
    error = caps.cap_error({"type": NOT_STARTED, "message": f"not started: {reason}"})
    body: dict[str, object] = {"worker": worker, "error": error, "not_started": True}
    if paused:
        body["paused"] = True
    return _outcome(req, protocol.TASK_FAILED, protocol.result_id, body)


def child_body(child: ChildRun, registry: Registry, max_payload_bytes: int) -> dict[str, Any]:
    """What the engine needs to start a child run: its compiled spec and checked inputs
    (raises, failing the attempt, if the flow or its inputs are wrong or too large)."""
    spec = child.flow if isinstance(child.flow, FlowSpec) else compile_flow(child.flow, registry)
    inputs = dict(child.inputs)
    validate_inputs(spec, inputs)
    body = {"flow": spec.name, "spec": spec.to_data(), "inputs": inputs}
    if (size := len(protocol.pack(body))) > max_payload_bytes:
        raise PayloadTooLargeError(f"the child run of flow {spec.name!r}", size, max_payload_bytes)
    return body


def bind_outputs(req: TaskRequest, value: Any) -> dict[str, Any]:
    """Map a task's return value to its provided names."""
    if not req.provides:
        return {}
    if not req.unpack:
        return {req.provides[0]: value}
    if isinstance(value, Mapping):
        missing = [p for p in req.provides if p not in value]
        if missing:
            raise TypeError(f"returned mapping lacks {missing} (provides {req.provides})")
        return {p: value[p] for p in req.provides}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != len(req.provides):
            raise TypeError(f"returned {len(value)} values for provides {req.provides}")
        return dict(zip(req.provides, value, strict=True))
    raise TypeError(f"returned a {type(value).__name__}; provides {req.provides} needs a sequence or mapping")


def _revert_kwargs(fn: Any, req: TaskRequest) -> dict[str, Any]:
    """The task's inputs, ``result`` and ``failure`` (a `Failure` when the task itself failed,
    else None), limited to what the revert handler accepts. ``failure`` is offered only to a
    handler that names it: one with ``**kwargs`` written before gets what it always got."""
    offered = {**req.args, "result": req.result}
    params = inspect.signature(fn).parameters
    if FAILURE_PARAM in params and FAILURE_PARAM not in req.args:
        offered[FAILURE_PARAM] = None if req.failure is None else Failure.from_data(req.failure)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


def _call_kwargs(fn: Any, req: TaskRequest) -> dict[str, Any]:
    return _revert_kwargs(fn, req) if req.mode == protocol.MODE_REVERT else req.args


def execute(
    req: TaskRequest, registry: Registry, worker: str, max_payload_bytes: int, ctx: TaskContext | None = None
) -> Event:
    """Run the task (or its revert handler) named by ``req``; never raises."""
    try:
        task_def = registry.get(req.fn)
    except UnknownTaskError as e:
        return _failed(req, worker, "UnknownTaskError", f"{e} (is the worker started with its module?)")
    start = time.monotonic()
    token = set_current(ctx or TaskContext(req.run_id, req.task, req.attempt))
    try:
        value = task_def.fn(**_call_kwargs(task_def.fn, req))
        if inspect.isawaitable(value):  # an async callable we did not recognise as one
            getattr(value, "close", lambda: None)()
            raise TypeError(f"task {req.fn!r} returned an awaitable: define it with async def")
    except Exception as e:  # noqa: BLE001 - the task's own failure: report it, keep serving
        return _failed(req, worker, type(e).__name__, str(e), traceback.format_exc(), _types(e))
    finally:
        reset_current(token)
    return report(req, worker, max_payload_bytes, value, start, registry)


async def execute_async(
    req: TaskRequest, task_def: TaskDef, worker: str, max_payload_bytes: int, ctx: TaskContext
) -> Event:
    """Await the ``async def`` task (or revert handler) of ``req``; never raises but
    `asyncio.CancelledError` when cancelled for another reason than the ones below.

    Past ``req.timeout_s`` the coroutine is cancelled and the attempt fails with
    ``TaskTimeout``, as the engine's timer fails a threaded one; cancelled because its run was
    cancelled or its attempt superseded (``ctx.cancel_requested``), it fails with
    ``TaskCancelled`` (the engine ignores or fences that report).
    """
    start = time.monotonic()
    token = set_current(ctx)  # this asyncio task's own copy of the context: no other task sees it
    try:
        async with asyncio.timeout(req.timeout_s or None) as limit:
            value = await task_def.fn(**_call_kwargs(task_def.fn, req))
    except asyncio.CancelledError:
        if not ctx.cancel_requested:
            raise
        return cancelled(req, worker, ctx)
    except Exception as e:  # noqa: BLE001 - the task's own failure: report it, keep serving
        if isinstance(e, TimeoutError) and limit.expired():
            return timed_out(req, worker)
        return _failed(req, worker, type(e).__name__, str(e), traceback.format_exc(), _types(e))
    finally:
        reset_current(token)
    if limit.expired():  # the body swallowed the cancellation: too late all the same
        return timed_out(req, worker)
    return report(req, worker, max_payload_bytes, value, start)


def cancelled(req: TaskRequest, worker: str, ctx: TaskContext) -> Event:
    """The report of an async task cancelled because its run was cancelled or its attempt
    superseded: the engine ignores it (the run is over) or fences it (a newer attempt runs)."""
    why = (
        "its attempt was superseded"
        if ctx.live.fenced and not ctx.live.cancelled
        else "its run was cancelled"
    )
    return _failed(req, worker, "TaskCancelled", f"attempt {req.attempt} cancelled: {why}")


def timed_out(req: TaskRequest, worker: str) -> Event:
    """The attempt's failure at its time limit, as the engine's timer reports it."""
    message = f"attempt {req.attempt} did not finish within {req.timeout_s:g} s"
    return _failed(req, worker, "TaskTimeout", message, types=["TaskTimeout"])


def report(
    req: TaskRequest,
    worker: str,
    max_payload_bytes: int,
    value: Any,
    start: float,
    registry: Registry | None = None,
) -> Event:
    """The event for a body that returned ``value``: waiting (it deferred, or started a child
    run: its flow compiled with ``registry``), reverted, succeeded, or failed because the
    value cannot be carried."""
    deferred = value if isinstance(value, Deferred) and req.mode != protocol.MODE_REVERT else None
    elapsed_ms = int((time.monotonic() - start) * 1000)
    if isinstance(value, ChildRun) and req.mode != protocol.MODE_REVERT:
        try:
            child = child_body(value, registry or REGISTRY, max_payload_bytes)
        except Exception as e:  # noqa: BLE001 - a wrong child fails the attempt, as a raise would
            return _failed(req, worker, type(e).__name__, str(e), traceback.format_exc(), _types(e))
        waiting = {"worker": worker, "ms": elapsed_ms, "child": child}
        return _outcome(req, protocol.TASK_WAITING, protocol.waiting_id, waiting)
    if deferred is not None:
        body: dict[str, Any] = {"worker": worker, "ms": elapsed_ms, "note": deferred.note}
        if deferred.timeout_s:
            body["timeout_s"] = float(deferred.timeout_s)
        return _outcome(req, protocol.TASK_WAITING, protocol.waiting_id, body)
    if req.mode == protocol.MODE_REVERT:
        return _outcome(
            req, protocol.TASK_REVERTED, protocol.revert_result_id, {"worker": worker, "ms": elapsed_ms}
        )
    try:
        values = bind_outputs(req, value)
    except Exception as e:  # noqa: BLE001 - the value does not fit the provided names
        return _failed(req, worker, type(e).__name__, str(e), traceback.format_exc(), _types(e))
    try:
        size = len(protocol.pack(values))
    except EncodeError as e:
        return _failed(
            req, worker, "EncodeError", f"task {req.task!r} returned a value msgpack cannot carry: {e}"
        )
    if size > max_payload_bytes:
        return _failed(
            req,
            worker,
            "PayloadTooLargeError",
            f"task {req.task!r} returned {size} bytes, over the limit of {max_payload_bytes}",
        )
    return _outcome(
        req,
        protocol.TASK_SUCCEEDED,
        protocol.result_id,
        {"worker": worker, "values": values, "ms": elapsed_ms},
    )
