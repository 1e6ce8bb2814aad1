"""Child runs (`runner.define.child`), decided like any other event.

A task that returned `start_child` reports ``task.waiting`` with the child's spec and inputs:
the parent's commit puts the task WAITING and the child's ``run.submit`` in its outbox (the
child's id is derived from the parent, task and attempt, so a repeated report submits the same
run, which exists already). The child's run records its parent; the commit that finishes it
puts a ``task.complete`` for the parent's task in its outbox, with the child's result or
error, applied like an outside completion (only while that attempt waits).
Cancelling the parent, or its task's waiting time running out, cancels the child.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner import protocol, states
from runner.decide.draft import Draft
from runner.define.child import child_run_id
from runner.define.spec import FlowSpec
from runner.protocol import Event, pack, unpack
from runner.store import keys

CHILD_ERROR = "ChildRunFailed"


def submit_event(d: Draft, body: Mapping[str, Any]) -> str:
    """Put the child's submit in the outbox; its run id (raises ValueError/KeyError/TypeError
    for a malformed child, which the caller turns into the attempt's failure)."""
    e = d.event
    spec = FlowSpec.from_data(body["spec"])  # checked here: an engine never trusts a worker's spec
    inputs = dict(body["inputs"])
    child = child_run_id(d.run_id, e.task, e.attempt)
    parent = {"run": d.run_id, "task": e.task, "attempt": e.attempt}
    submit = {"flow": spec.name, "spec": spec.to_data(), "inputs": inputs, "parent": parent}
    d.send_event(Event(protocol.RUN_SUBMIT, protocol.submit_id(child), child, body=submit, at_ms=d.at))
    return child


def parent_of(body: Mapping[str, Any]) -> bytes | None:
    """What a child's submit records of its parent (None for a run submitted by a client)."""
    p = body.get("parent")
    if not isinstance(p, Mapping):
        return None
    return pack([str(p["run"]), str(p["task"]), int(p["attempt"])])


def tell_parent(d: Draft) -> None:
    """If this commit finishes a child run, complete its parent's task with the outcome."""
    raw = d.view.meta.get("parent")
    if not raw or not d.status_change or d.status_change[1] not in states.RUN_TERMINAL:
        return
    run, task, attempt = unpack(raw)
    status = d.status_change[1]
    body: dict[str, Any] = {"by": f"child run {d.run_id}", "child": d.run_id}
    meta = {**d.view.meta, **d.writes.get(keys.META, {})}  # as this commit leaves it
    result, error = meta.get("result"), meta.get("error")
    if status == states.SUCCESS:
        body["child_result"] = unpack(result) if result else {}
    else:
        err = unpack(error) if error else {}
        why = f": {err.get('type', '')}: {err.get('message', '')}" if err else ""
        body["error"] = {
            "type": CHILD_ERROR,
            "message": f"child run {d.run_id} ended {status}{why}",
            "types": [CHILD_ERROR],
            "child_error": err,
        }
    event_id = f"complete:{run}:{task}:{int(attempt)}:child"  # fenced by the task's attempt
    d.send_event(Event(protocol.TASK_COMPLETE, event_id, run, task, int(attempt), body, d.at))


def cancel_event(d: Draft, child: str, why: str) -> None:
    """Cancel a child run (its parent was cancelled, or stopped waiting for it)."""
    event_id = f"cancel:{child}:parent:{d.event.id}"
    d.send_event(
        Event(protocol.RUN_CANCEL, event_id, child, body={"by": f"parent run {d.run_id}", "reason": why})
    )
