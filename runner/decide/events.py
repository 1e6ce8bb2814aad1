"""One handler per event kind: what a worker's report, an outside completion or a timer
means for the run, as functions of the draft ``d``. Run control is in `control`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from runner import protocol, states
from runner.decide import children, progress, revert, scopes, unstarted
from runner.decide.draft import WAIT_TIMER, Draft, status_of
from runner.decide.view import Rules, View
from runner.define.lazy import result_values
from runner.define.spec import FlowSpec
from runner.protocol import Event, pack
from runner.store import keys
from runner.store.base import Commit

# Runs that take a completion. A FAILED run too: its waiting task's outside work did finish;
# recorded, the result starts nothing until the run is retried (refused, the completion would
# be lost, and the retried run would wait for it for ever).
COMPLETABLE = (states.RUNNING, states.PAUSED, states.REVERTING, states.FAILED)


# --- run.submit ------------------------------------------------------------------------


class _Flow(NamedTuple):
    """A submitted flow spec, decoded, with what the run stores of it."""

    spec: FlowSpec
    spec_id: bytes  # its digest: engines share cached task specs between its runs
    tasks: dict[str, bytes]  # each task's spec, as stored


_FLOWS: dict[bytes, _Flow] = {}  # by the packed spec: runs of one flow decode it once
_MAX_FLOWS = 256


def _flow(data: Any) -> _Flow:
    """The flow spec a submit carries (`FlowSpec.from_data` raises if it is invalid)."""
    packed = pack(data)
    flow = _FLOWS.get(packed)
    if flow is None:
        spec = FlowSpec.from_data(data)
        digest = hashlib.sha256(packed).hexdigest()[:32].encode()
        flow = _Flow(spec, digest, {n: pack(t.to_data()) for n, t in spec.tasks.items()})
        if len(_FLOWS) >= _MAX_FLOWS:
            _FLOWS.clear()
        _FLOWS[packed] = flow
    return flow


def decide_submit(event: Event, view: View, rules: Rules) -> Commit:
    """Create the run, store its spec and inputs, schedule its root tasks."""
    if status_of(view) is not None:  # the run exists (or was cancelled first): nothing to do
        return Commit(event.run_id, event.id)
    flow = _flow(event.body["spec"])
    spec = flow.spec
    inputs = event.body["inputs"]
    d = Draft(event, View(meta=dict(view.meta), full=True, applied_ms=view.applied_ms), rules)
    d.view.specs = dict(spec.tasks)
    d.guard(keys.META, "status", None)
    meta = {
        "flow": spec.name.encode(),
        "version": spec.version.encode(),
        "created_ms": str(d.at).encode(),
        "sinks": str(len(spec.sinks)).encode(),
        "outputs": pack(spec.outputs),
        "ntasks": str(len(spec.tasks)).encode(),
        "reverts": str(spec.reverts).encode(),
        "spec_id": flow.spec_id,
    }
    if spec.scopes:
        meta["scopes"] = pack(spec.scopes)
    parent = children.parent_of(event.body)
    if parent is not None:
        meta["parent"] = parent
    deadline = float(event.body.get("timeout_s") or 0)
    if deadline > 0:
        meta["deadline_s"] = repr(deadline).encode()
        meta["deadline_timer"] = d.timer(protocol.TIMER_DEADLINE, d.now + int(deadline * 1000)).encode()
    # What this commit writes is what later rules of the same decision read: a map over an
    # empty list finishes at once, and may finish the run here (its sinks, its outputs).
    d.view.meta.update(meta)
    for k, v in meta.items():
        d.write(keys.META, k, v)
    for n, raw in flow.tasks.items():
        d.write(keys.SPEC, n, raw)
    d.set_data({k: pack(v) for k, v in inputs.items()})
    d.set_run(states.RUNNING, flow=spec.name, **({"note": _child_note(event.body)} if parent else {}))
    for name, t in spec.tasks.items():
        if not t.preds:
            progress.schedule(d, name, 1)
    d.flow = spec.name
    children.tell_parent(d)  # a run can finish in its submit (a map over an empty list)
    return d.commit()


# --- task events -----------------------------------------------------------------------


def stale(d: Draft, active: frozenset[str] = states.TASK_ACTIVE) -> bool:
    """Record and refuse an event for an attempt that is not current (fencing)."""
    e = d.event
    if not d.view.has_spec(e.task):
        d.hist(e.task, "?", "?", e.attempt, note="unknown task")
        return True
    st = d.state(e.task)
    if st.attempt != e.attempt:
        note = f"fenced: attempt {e.attempt} is not the current attempt {st.attempt}"
    elif st.status not in active:
        note = f"ignored: task is already {st.status}"
    else:
        return False
    d.hist(e.task, st.status, st.status, e.attempt, note=note)
    return True


def decide_started(d: Draft) -> None:
    """SCHEDULED -> RUNNING; a later delivery of the same attempt is recorded as a redelivery."""
    e = d.event
    if stale(d):
        return
    st = d.state(e.task)
    worker = e.body["worker"]
    delivery = int(e.body.get("delivery", 0))
    if st.status == states.SCHEDULED:
        states.check_task(st.status, states.RUNNING)
        d.set_task(e.task, st.with_(status=states.RUNNING, started_ms=d.at, worker=worker, delivery=delivery))
        d.hist(e.task, st.status, states.RUNNING, e.attempt, worker=worker)
        timeout = d.view.spec(e.task).timeout_s
        if timeout:
            d.timer(protocol.TIMER_TIMEOUT, d.at + int(timeout * 1000), e.task, e.attempt)
    elif delivery > int(st.delivery or 0):
        d.set_task(e.task, st.with_(worker=worker, delivery=delivery))
        d.hist(
            e.task,
            st.status,
            st.status,
            e.attempt,
            worker=worker,
            note=f"redelivered to {worker} (delivery {delivery + 1})",
            redelivery=delivery,
        )


_REVERTING = frozenset({states.REVERTING})
_STARTABLE = frozenset({states.SCHEDULED, states.RUNNING})


def decide_leased(d: Draft) -> None:
    """A long task's worker gave its delivery back: from now on a lease in Redis covers it.
    The same for a long revert handler (``mode`` revert): its lease covers the REVERTING task."""
    e = d.event
    for_revert = e.body.get("mode") == protocol.MODE_REVERT
    if stale(d, _REVERTING if for_revert else states.TASK_ACTIVE):
        return
    st = d.state(e.task)
    until = d.now + int(d.rules.lease_s * 1000)
    new = st.with_(lease_until_ms=until)
    if st.lease_until_ms is not None:
        d.cancel.append(
            protocol.timer_id(protocol.TIMER_LEASE, d.run_id, e.task, e.attempt, str(st.lease_until_ms))
        )
    timeout = 0.0 if for_revert else d.view.spec(e.task).timeout_s
    if timeout:  # armed when started; again here, should the started event have been lost
        d.timer(protocol.TIMER_TIMEOUT, int(st.started_ms or d.at) + int(timeout * 1000), e.task, e.attempt)
    d.set_task(e.task, new)
    d.write(keys.LEASES, e.task, f"{e.attempt}:{until}".encode())
    d.timer(protocol.TIMER_LEASE, until, e.task, e.attempt, str(until))
    worker = e.body["worker"]
    d.hist(
        e.task,
        st.status,
        st.status,
        e.attempt,
        worker=worker,
        note=f"{'revert ' if for_revert else ''}leased by {worker}; delivery acknowledged",
    )


def decide_succeeded(d: Draft) -> None:
    """Record the task's outputs, then advance its successors."""
    if stale(d):
        return
    e = d.event
    progress.succeed(d, e.task, e.body["values"], e.body["worker"], e.body.get("ms"))


def decide_waiting(d: Draft) -> None:
    """A lazy task deferred: WAITING for an outside completion, holding nothing. A task
    already WAITING took this event before (a redelivery: its engine died before the ack)."""
    if stale(d, _STARTABLE):
        return
    e = d.event
    st = d.state(e.task)
    worker = e.body["worker"]
    old = progress.implied_start(d, e.task, st, worker)
    states.check_task(old, states.WAITING)
    child = None
    if "child" in e.body:
        try:
            child = children.submit_event(d, e.body["child"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:  # a worker's malformed child
            progress.fail_attempt(
                d,
                e.task,
                {"type": "InvalidChildRun", "message": f"the child run cannot start: {err!r}"},
                worker,
            )
            return
    new = progress.end_attempt(
        d, e.task, st, status=states.WAITING, waiting_ms=d.at, worker=worker, child=child
    )
    limit = float(e.body.get("timeout_s") or d.view.spec(e.task).timeout_s or 0)
    if limit:
        new = new.with_(wait_limit_s=limit)
        d.timer(protocol.TIMER_TIMEOUT, d.now + int(limit * 1000), e.task, e.attempt, WAIT_TIMER)
    d.set_task(e.task, new)
    note = "waiting for an outside completion" + (f": {e.body['note']}" if e.body.get("note") else "")
    if child is not None:
        note = f"waiting for its child run {child}"
    d.hist(e.task, old, states.WAITING, e.attempt, worker=worker, note=note)


def decide_complete(d: Draft) -> None:
    """An outside system completed (or failed) a task with its token."""
    e = d.event
    if not d.view.has_spec(e.task):
        d.hist(e.task, "?", "?", e.attempt, note="unknown task")
        return
    st = d.state(e.task)
    if d.run_status not in COMPLETABLE:
        d.hist(e.task, st.status, st.status, e.attempt, note=f"completion refused: the run is {d.run_status}")
        return
    # Only the current attempt, while it is active: waiting (it deferred) — or still running,
    # as when an outside system answers before the task's defer() is recorded: the
    # completion is then the attempt's result, and the task's own report that follows is
    # ignored like any duplicate. While the run is reverting, a completed task is reverted
    # like any that finished late (compensation waits for it).
    if stale(d):
        return
    by = f"outside:{e.body['by']}"
    if "child" in e.body:
        by = str(e.body["by"])
        if "child_result" in e.body:
            spec = d.view.spec(e.task)
            try:
                values = result_values(spec.provides, spec.unpack, e.body["child_result"])
            except ValueError as err:
                error = {"type": children.CHILD_ERROR, "message": f"child run {e.body['child']}: {err}"}
                progress.fail_attempt(d, e.task, error, by)
                return
            progress.succeed(d, e.task, values, by, note=f"child run {e.body['child']} succeeded")
            return
    if "error" in e.body:
        progress.fail_attempt(d, e.task, dict(e.body["error"]), by)
    else:
        progress.succeed(d, e.task, dict(e.body.get("values") or {}), by, note="completed from outside")


def decide_failed(d: Draft) -> None:
    """The attempt failed: retry per the task's policy, or fail the run."""
    if stale(d):
        return
    if d.event.body.get("not_started"):
        body = d.event.body
        unstarted.not_started(d, d.event.task, body["error"], body["worker"], paused=bool(body.get("paused")))
        return
    progress.fail_attempt(d, d.event.task, d.event.body["error"], d.event.body["worker"])


def decide_reverted(d: Draft) -> None:
    """A revert handler finished: REVERTED, then the next one; a failed revert fails the run."""
    e = d.event
    if stale(d, frozenset({states.REVERTING})):
        return
    st = d.state(e.task)
    worker = e.body["worker"]
    revert.end_revert_lease(d, e.task)
    if e.kind == protocol.TASK_REVERTED:
        states.check_task(st.status, states.REVERTED)
        d.set_task(e.task, d.state(e.task).with_(status=states.REVERTED, revert_finished_ms=d.at))
        d.hist(e.task, states.REVERTING, states.REVERTED, e.attempt, worker=worker)
        revert.reverted(d, e.task)
        acts = scopes.after_end(d, e.task)  # a retry scope's revert: its next step
        if acts is not None:
            progress.scoped(d, acts)
        return
    revert.revert_failed(d, e.task, e.body["error"], worker)
    scopes.revert_failed(d, e.task, e.body["error"])


# --- timers ----------------------------------------------------------------------------


def decide_timer(d: Draft) -> None:
    e = d.event
    purpose = e.body["purpose"]
    if purpose == protocol.TIMER_DEADLINE:
        if (d.view.meta.get("deadline_timer") or b"").decode() != e.id:
            d.note("run", 0, "an earlier deadline passed; ignored: the run was retried with a new one")
        elif d.run_status in (states.RUNNING, states.PAUSED):
            secs = (d.view.meta.get("deadline_s") or b"?").decode()
            progress.fail_run(
                d, {"type": "RunTimeout", "message": f"the run did not finish within {secs} s", "task": ""}
            )
        else:
            d.note("run", 0, f"deadline passed; ignored: run is {d.run_status}")
        return
    if purpose == protocol.TIMER_RETRY:
        st = d.state(e.task)
        if st.status != states.FAILED or st.attempt != e.attempt - 1 or st.retry_at_ms is None:
            d.hist(e.task, st.status, st.status, e.attempt, note="retry timer ignored: the task moved on")
        elif d.run_status not in (states.RUNNING, states.PAUSED):
            d.hist(e.task, st.status, st.status, e.attempt, note=f"retry not started: run is {d.run_status}")
        elif scopes.reverting(d, e.task):
            d.hist(e.task, st.status, st.status, e.attempt, note="retry not started: its flow is reverting")
        else:
            progress.schedule(d, e.task, e.attempt)
        return
    if (
        purpose == protocol.TIMER_LEASE
        and d.view.has_spec(e.task)
        and d.state(e.task).status == states.REVERTING
    ):
        revert_lease_timer(d)
        return
    if stale(d):
        return
    st = d.state(e.task)
    if purpose == protocol.TIMER_TIMEOUT:
        if (st.status == states.WAITING) != e.id.endswith(":" + WAIT_TIMER):
            d.hist(
                e.task,
                st.status,
                st.status,
                e.attempt,
                note="timeout ignored: it was for the task's other phase",
            )
            return
        if st.status == states.WAITING:
            msg = f"attempt {e.attempt} was not completed within {float(st.wait_limit_s or 0):g} s"
            if st.child:
                children.cancel_event(d, st.child, f"its parent's task {e.task} stopped waiting: {msg}")
        else:
            msg = f"attempt {e.attempt} did not finish within {d.view.spec(e.task).timeout_s:g} s"
        progress.fail_attempt(d, e.task, {"type": "TaskTimeout", "message": msg, "types": ["TaskTimeout"]})
        return
    if purpose == protocol.TIMER_LEASE:
        if st.lease_until_ms is None:  # claimed just before the task deferred (WAITING holds no lease)
            d.hist(
                e.task, st.status, st.status, e.attempt, note="lease timer ignored: the task holds no lease"
            )
            return
        raw = d.view.lease(e.task)
        attempt, _, until = (raw or b"0:0").decode().partition(":")
        if int(attempt) == e.attempt and int(until) > e.at_ms:  # renewed since: look again when it ends
            d.set_task(e.task, st.with_(lease_until_ms=int(until)))
            d.timer(protocol.TIMER_LEASE, int(until), e.task, e.attempt, until)
            return
        lost = int(st.leases_lost or 0) + 1
        msg = (
            f"the worker's lease expired (no heartbeat for {d.rules.lease_s:g} s); lease lost {lost} time(s)"
        )
        progress.fail_attempt(d, e.task, {"type": "LeaseExpired", "message": msg}, lease_lost=True)
        return
    d.hist(e.task, st.status, st.status, e.attempt, note=f"unknown timer {purpose!r}")


def revert_lease_timer(d: Draft) -> None:
    """A lease timer of a REVERTING task: its revert handler's lease, renewed or expired."""
    e = d.event
    if stale(d, _REVERTING):
        return
    st = d.state(e.task)
    if st.lease_until_ms is None:  # the body's lease timer, late: the revert holds its delivery
        d.hist(e.task, st.status, st.status, e.attempt, note="lease timer ignored: the revert is not leased")
        return
    raw = d.view.lease(e.task)
    attempt, _, until = (raw or b"0:0").decode().partition(":")
    if int(attempt) == e.attempt and int(until) > e.at_ms:  # renewed since: look again when it ends
        d.set_task(e.task, st.with_(lease_until_ms=int(until)))
        d.timer(protocol.TIMER_LEASE, int(until), e.task, e.attempt, until)
        return
    revert.revert_lease_expired(d, e.task)


def _child_note(body: Mapping[str, Any]) -> str:
    p = body["parent"]
    return f"child of run {p['run']} (task {p['task']}, attempt {p['attempt']})"
