"""What each event means: pure functions from (the event, the few fields read) to a commit.

The engine reads what `reads_*` ask for, calls `decide`, and hands the resulting
`runner.store.Commit` to the store, which applies it only if the guards still hold. Nothing
here does I/O, so every rule of the state machine is testable without a network and is the
same for local and distributed runs.

Cost per event is O(degree of the task): an event reads and writes its task, its
successors' join counts and specs, and the inputs of the successors it makes ready, never
the whole run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import keys, protocol, states
from runner.broker import task_queue
from runner.flows import END, FlowSpec, TaskSpec
from runner.protocol import Event, TaskRequest, pack, unpack
from runner.store import Commit, Guard


@dataclass
class View:
    """The fields of one run an event's decision depends on, as read from the store."""

    meta: dict[str, bytes | None] = field(default_factory=dict)
    tasks: dict[str, bytes | None] = field(default_factory=dict)  # raw state, None = PENDING
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    joins: dict[str, bytes | None] = field(default_factory=dict)  # raw count, None = 0
    data: dict[str, bytes | None] = field(default_factory=dict)  # packed values
    applied_ms: int = 0  # when the engine applies the event (history "t")
    redelivered: bool = False  # the broker redelivered the event (an engine or link died)


META_FIELDS = ("status", "created_ms", "sinks", "outputs")


def task_state(raw: bytes | None) -> dict[str, Any]:
    return {"s": states.PENDING, "a": 0} if raw is None else dict(unpack(raw))


def status_of(view: View) -> str | None:
    raw = view.meta.get("status")
    return None if raw is None else raw.decode()


def _history(
    event: Event, view: View, scope: str, old: str, new: str, attempt: int = 0, **extra: Any
) -> bytes:
    """One history entry: "at" is when the event was made, "t" when it was applied."""
    if view.applied_ms:
        extra["t"] = view.applied_ms
    if view.redelivered:
        extra["redelivered"] = True
    entry = {
        "at": event.at_ms or protocol.now_ms(),
        "event": event.id,
        "kind": event.kind,
        "scope": scope,
        "from": old,
        "to": new,
        "attempt": attempt,
    }
    entry.update(extra)
    return pack(entry)


def outbox_entry(routing_key: str, msg: protocol.Message) -> bytes:
    return pack([routing_key, protocol.encode(msg)])


def _request(
    run_id: str, name: str, spec: TaskSpec, attempt: int, data: Mapping[str, bytes | None]
) -> TaskRequest:
    args: dict[str, Any] = {}
    for param, data_name in spec.args.items():
        raw = data.get(data_name)
        args[param] = None if raw is None else unpack(raw)
    for param, data_name in spec.optional.items():
        raw = data.get(data_name)
        if raw is not None:
            args[param] = unpack(raw)
    return TaskRequest(
        id=protocol.request_id(run_id, name, attempt),
        run_id=run_id,
        task=name,
        fn=spec.fn,
        attempt=attempt,
        args=args,
        provides=spec.provides,
        unpack=spec.unpack,
        at_ms=protocol.now_ms(),
    )


def needed_data(specs: Mapping[str, TaskSpec], names: list[str]) -> list[str]:
    """The data names the given tasks take as arguments."""
    out: list[str] = []
    for n in names:
        s = specs[n]
        out += list(s.args.values()) + list(s.optional.values())
    return out


# --- run.submit ------------------------------------------------------------------------


def decide_submit(event: Event, view: View, retention_s: int) -> Commit:
    """Create the run, store its spec and inputs, schedule its root tasks."""
    if status_of(view) is not None:  # the run exists: nothing to do but remember the event
        return Commit(event.run_id, event.id)
    spec = FlowSpec.from_data(event.body["spec"])
    inputs = event.body["inputs"]
    now = event.at_ms or protocol.now_ms()
    packed_inputs = {k: pack(v) for k, v in inputs.items()}
    meta = {
        "status": states.RUNNING.encode(),
        "flow": spec.name.encode(),
        "version": spec.version.encode(),
        "created_ms": str(now).encode(),
        "updated_ms": str(now).encode(),
        "sinks": str(len(spec.sinks)).encode(),
        "outputs": pack(spec.outputs),
        "ntasks": str(len(spec.tasks)).encode(),
    }
    hist = [_history(event, view, "run", states.PENDING, states.RUNNING, flow=spec.name)]
    tasks: dict[str, bytes] = {}
    outbox: dict[str, bytes] = {}
    for name, t in spec.tasks.items():
        if t.preds:
            continue
        req = _request(event.run_id, name, t, 1, packed_inputs)
        tasks[name] = pack({"s": states.SCHEDULED, "a": 1, "t": now})
        outbox[req.id] = outbox_entry(task_queue(t.queue), req)
        hist.append(_history(event, view, name, states.PENDING, states.SCHEDULED, 1))
    return Commit(
        run_id=event.run_id,
        event_id=event.id,
        guards=[(keys.META, "status", None)],
        writes={
            keys.META: meta,
            keys.SPEC: {n: pack(t.to_data()) for n, t in spec.tasks.items()},
            keys.DATA: packed_inputs,
            keys.TASKS: tasks,
        },
        history=hist,
        outbox=outbox,
        status_change=("", states.RUNNING),
        created_ms=now,
        expire_s=0,
    )


# --- task events -----------------------------------------------------------------------


def stale_commit(event: Event, view: View, retention_s: int) -> Commit | None:
    """A no-op commit when the event is for an attempt that is not current (fencing)."""
    st = task_state(view.tasks.get(event.task))
    if event.task not in view.specs:
        note = "unknown task"
    elif st["a"] != event.attempt:
        note = f"fenced: attempt {event.attempt} is not the current attempt {st['a']}"
    elif st["s"] not in states.TASK_ACTIVE:
        note = f"ignored: task is already {st['s']}"
    else:
        return None
    return Commit(
        event.run_id,
        event.id,
        history=[_history(event, view, event.task, st["s"], st["s"], event.attempt, note=note)],
        expire_s=_expire(status_of(view), retention_s),
    )


def _expire(status: str | None, retention_s: int) -> int:
    return retention_s if status in states.RUN_TERMINAL else 0


def decide_started(event: Event, view: View, retention_s: int) -> Commit:
    """SCHEDULED -> RUNNING; a later delivery of the same attempt is recorded as a redelivery."""
    stale = stale_commit(event, view, retention_s)
    if stale is not None:
        return stale
    raw = view.tasks.get(event.task)
    st = task_state(raw)
    worker = event.body["worker"]
    delivery = int(event.body.get("delivery", 0))
    expire = _expire(status_of(view), retention_s)
    if st["s"] == states.SCHEDULED:
        states.check_task(st["s"], states.RUNNING)
        new = dict(st, s=states.RUNNING, st=event.at_ms, w=worker, d=delivery)
        hist = _history(event, view, event.task, st["s"], states.RUNNING, event.attempt, worker=worker)
    elif delivery > int(st.get("d", 0)):
        new = dict(st, w=worker, d=delivery)
        hist = _history(
            event,
            view,
            event.task,
            st["s"],
            st["s"],
            event.attempt,
            worker=worker,
            note=f"redelivered to {worker} (delivery {delivery + 1})",
            redelivery=delivery,
        )
    else:
        return Commit(event.run_id, event.id, expire_s=expire)
    return Commit(
        run_id=event.run_id,
        event_id=event.id,
        guards=[(keys.TASKS, event.task, raw)],
        writes={keys.TASKS: {event.task: pack(new)}},
        history=[hist],
        expire_s=expire,
    )


def _after_start(st: dict[str, Any]) -> str:
    return states.RUNNING if st["s"] == states.SCHEDULED else str(st["s"])


def _implied_start(event: Event, view: View, st: dict[str, Any]) -> list[bytes]:
    """A result can overtake its "started" event; history still shows the task RUNNING once."""
    if st["s"] != states.SCHEDULED:
        return []
    return [
        _history(
            event,
            view,
            event.task,
            states.SCHEDULED,
            states.RUNNING,
            event.attempt,
            worker=event.body.get("worker", ""),
            note="implied by its result",
        )
    ]


def ready_successors(event: Event, view: View) -> list[str]:
    """Successors whose join completes with this task (END for the run itself)."""
    spec = view.specs[event.task]
    ready = []
    for s in spec.succs:
        done = int(view.joins.get(s) or 0)
        need = int(view.meta["sinks"] or 0) if s == END else len(view.specs[s].preds)
        if done + 1 == need:
            ready.append(s)
    return ready


def decide_succeeded(event: Event, view: View, retention_s: int) -> Commit:
    """Record the task's outputs, add it to its successors' joins, schedule the ready ones."""
    stale = stale_commit(event, view, retention_s)
    if stale is not None:
        return stale
    name, raw = event.task, view.tasks.get(event.task)
    st = task_state(raw)
    spec = view.specs[name]
    values = event.body["values"]
    if sorted(values) != sorted(spec.provides):
        error = {
            "type": "ProtocolError",
            "traceback": "",
            "message": f"result names {sorted(values)} differ from provides {spec.provides}",
        }
        return _fail(event, view, raw, st, error, retention_s)
    run_status = status_of(view)
    now = event.at_ms or protocol.now_ms()
    states.check_task(st["s"], states.SUCCESS)
    packed = {k: pack(v) for k, v in values.items()}
    hist = _implied_start(event, view, st)
    new = dict(st, s=states.SUCCESS, ft=now, w=event.body["worker"])
    if "ms" in event.body:
        new["ms"] = event.body["ms"]
    guards: list[Guard] = [(keys.TASKS, name, raw), (keys.META, "status", view.meta["status"])]
    tasks = {name: pack(new)}
    joins: dict[str, bytes] = {}
    hist.append(
        _history(
            event, view, name, _after_start(st), states.SUCCESS, event.attempt, worker=event.body["worker"]
        )
    )
    outbox: dict[str, bytes] = {}
    meta: dict[str, bytes] = {"updated_ms": str(now).encode()}
    status_change = None
    data = dict(view.data)
    data.update(packed)
    ready = set(ready_successors(event, view))
    for s in spec.succs:
        guards.append((keys.JOINS, s, view.joins.get(s)))
        joins[s] = str(int(view.joins.get(s) or 0) + 1).encode()
        joins[keys.join_member(s, name)] = b"1"
        if s not in ready or run_status != states.RUNNING:
            continue
        if s == END:
            outputs = unpack(view.meta["outputs"] or pack([]))
            result = {o: unpack(raw) for o in outputs if (raw := data.get(o)) is not None}
            meta.update(status=states.SUCCESS.encode(), result=pack(result), finished_ms=str(now).encode())
            states.check_run(states.RUNNING, states.SUCCESS)
            status_change = (states.RUNNING, states.SUCCESS)
            hist.append(_history(event, view, "run", states.RUNNING, states.SUCCESS))
            run_status = states.SUCCESS
            continue
        req = _request(event.run_id, s, view.specs[s], 1, data)
        tasks[s] = pack({"s": states.SCHEDULED, "a": 1, "t": now})
        outbox[req.id] = outbox_entry(task_queue(view.specs[s].queue), req)
        hist.append(_history(event, view, s, states.PENDING, states.SCHEDULED, 1))
    return Commit(
        run_id=event.run_id,
        event_id=event.id,
        guards=guards,
        writes={keys.TASKS: tasks, keys.DATA: packed, keys.JOINS: joins, keys.META: meta},
        history=hist,
        outbox=outbox,
        status_change=status_change,
        created_ms=int(view.meta.get("created_ms") or 0),
        expire_s=_expire(run_status, retention_s),
    )


def decide_failed(event: Event, view: View, retention_s: int) -> Commit:
    """Mark the attempt failed and fail the run with the error."""
    stale = stale_commit(event, view, retention_s)
    if stale is not None:
        return stale
    raw = view.tasks.get(event.task)
    return _fail(event, view, raw, task_state(raw), dict(event.body["error"]), retention_s)


def _fail(
    event: Event, view: View, raw: bytes | None, st: dict[str, Any], error: dict[str, Any], retention_s: int
) -> Commit:
    now = event.at_ms or protocol.now_ms()
    states.check_task(st["s"], states.FAILED)
    error = {
        "type": str(error.get("type", "Error")),
        "message": str(error.get("message", "")),
        "traceback": str(error.get("traceback", "")),
    }
    new = dict(st, s=states.FAILED, ft=now, err=error, w=event.body.get("worker", ""))
    hist = _implied_start(event, view, st) + [
        _history(
            event,
            view,
            event.task,
            _after_start(st),
            states.FAILED,
            event.attempt,
            error_type=error["type"],
            error=error["message"],
        )
    ]
    meta: dict[str, bytes] = {"updated_ms": str(now).encode()}
    run_status = status_of(view)
    status_change = None
    if run_status == states.RUNNING:
        states.check_run(states.RUNNING, states.FAILED)
        meta.update(
            status=states.FAILED.encode(),
            finished_ms=str(now).encode(),
            error=pack(dict(error, task=event.task, attempt=event.attempt)),
        )
        status_change = (states.RUNNING, states.FAILED)
        hist.append(
            _history(
                event, view, "run", states.RUNNING, states.FAILED, task=event.task, error_type=error["type"]
            )
        )
        run_status = states.FAILED
    return Commit(
        run_id=event.run_id,
        event_id=event.id,
        guards=[(keys.TASKS, event.task, raw), (keys.META, "status", view.meta["status"])],
        writes={keys.TASKS: {event.task: pack(new)}, keys.META: meta},
        history=hist,
        status_change=status_change,
        created_ms=int(view.meta.get("created_ms") or 0),
        expire_s=_expire(run_status, retention_s),
    )
