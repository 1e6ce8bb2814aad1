"""Compensation, as functions of the draft ``d``: which completed task to revert next, when
the run is done reverting, and what a revert handler's end or lost lease means.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runner import protocol, states
from runner.decide.draft import Draft
from runner.decide.records import NOT_STARTED, TaskState, error_dict
from runner.decide.view import Need
from runner.define.spec import END, TaskSpec
from runner.store import keys

# --- compensation ------------------------------------------------------------------
#
# A completed task is reverted only once every task after it (transitively) has settled:
# pending, skipped, failed, or succeeded and already reverted. A successor still
# scheduled, running or waiting may yet read the task's outputs, and if it succeeds its
# own revert must run first; so compensation waits for it (a worker skips a failing
# run's requests that have not started, and reports them, so the wait is short). The
# order is decided afresh at each step from the tasks' states, not from a plan made when
# the run failed: a plan would not know which successors finish after it was made.
#
# As in TaskFlow, a task whose body failed is owed its handler's call too, with the failure
# instead of a result — if the handler takes ``failure`` (`TaskSpec.revert_failure`). A map
# node's handler is called per element (the last first), once the node stopped and none of
# its elements is active; a reverted task's results leave the run's data (`reverted`).


def successors_first(d: Draft) -> list[str]:
    """The run's tasks, every task before its predecessors (reverse topological order)."""
    if not d.view.full:
        raise Need()
    order: list[str] = []
    specs = d.view.specs
    indeg = {n: len(s.preds) for n, s in specs.items()}
    ready = sorted(n for n, d in indeg.items() if d == 0)
    while ready:
        n = ready.pop(0)
        order.append(n)
        for s in specs[n].succs:
            if s != END:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
    return order[::-1]


def body_failed(st: TaskState) -> bool:
    """FAILED by its body (an exception, a timeout, a lost lease, an outside failure): not by
    a worker skipping the request of a failing run, nor by its own revert handler."""
    return (
        st.status == states.FAILED and st.revert_error is None and (st.error or {}).get("type") != NOT_STARTED
    )


def _undoable(spec: TaskSpec, st: TaskState) -> bool:
    """A task (or map element) whose handler is owed a call: it succeeded, or its body failed
    and the handler takes ``failure``."""
    return st.status == states.SUCCESS or (spec.revert_failure and body_failed(st))


def is_map_node(d: Draft, name: str) -> bool:
    return d.view.spec(name).map is not None and keys.item_of(name) is None


def elements_to_revert(d: Draft, node: str) -> list[str]:
    """A map node's elements whose handler is owed a call, the last element first."""
    spec = d.view.spec(node)
    n = int(d.state(node).items or 0)
    names = [keys.item_name(node, i) for i in reversed(range(n))]
    return [x for x in names if _undoable(spec, d.state(x))]


def revertable(d: Draft, name: str) -> bool:
    """Its revert handler is owed a call: a completed task (or one whose body failed, for a
    handler that takes ``failure``); a map node with such elements, once it stopped."""
    spec = d.view.spec(name)
    if not spec.revert:
        return False
    st = d.state(name)
    if is_map_node(d, name):
        stopped = st.status in (states.SUCCESS, states.FAILED, states.RUNNING)
        return stopped and st.revert_error is None and bool(elements_to_revert(d, name))
    return _undoable(spec, st)


def active(d: Draft, name: str) -> bool:
    """Still able to act: scheduled, running, waiting, or its revert in flight.

    A map node stopped by a failure (RUNNING in a failed run, or FAILED by an element that
    gave up) starts no more elements: it is active only while one of those it started is.
    """
    st = d.state(name)
    if st.status == states.REVERTING:
        return True
    node = is_map_node(d, name) and st.next_item is not None
    if node and st.status in (states.RUNNING, states.FAILED):
        started = [keys.item_name(name, i) for i in range(int(st.next_item or 0))]
        return any(d.state(x).status in states.TASK_ACTIVE for x in started)
    return st.status in states.TASK_ACTIVE


def to_revert(d: Draft) -> list[str]:
    """Completed tasks with a revert handler, successors before predecessors."""
    return [n for n in successors_first(d) if revertable(d, n)]


def next_revert(d: Draft, among: set[str] | None = None) -> str | None:
    """The first task to revert whose successors, direct and transitive, have all settled
    (only tasks ``among`` these, if given: a retry scope's)."""
    unsettled: set[str] = set()  # tasks with something unsettled at or after them
    specs = d.view.specs
    for n in successors_first(d):  # successors are decided before their predecessors
        if among is not None and n not in among:
            continue
        after = any(s in unsettled for s in specs[n].succs if s != END)
        busy = active(d, n)  # a map node with elements still running is both
        if revertable(d, n) and not after and not busy:
            return n
        if after or busy or revertable(d, n):
            unsettled.add(n)
    return None


def revertable_running(d: Draft) -> bool:
    """Whether a task with a revert handler is still running (its success is reverted too)."""
    if not d.view.full:
        raise Need()
    return any(spec.revert and active(d, n) for n, spec in d.view.specs.items())


def revert_step(d: Draft) -> None:
    """Start the next revert; once none is left and nothing revertable still runs, finish:
    REVERTED (FAILED if there was nothing to revert after all)."""
    if not d.view.full:
        raise Need()
    # What happens next depends on every task's state, not only the ones this event changes:
    # fenced by all of them as read, so two task ends decided at once (a revert's and a skip's,
    # on two engines) cannot each see the other's task unsettled and both leave it be.
    d.guard_tasks_read()
    if any(d.state(n).status == states.REVERTING for n in d.view.specs):
        return  # one at a time: the one in flight calls this again when it ends
    name = next_revert(d)
    if name is not None:
        start_revert(d, name)
        return
    if to_revert(d) or revertable_running(d):
        return  # a successor still runs: its end (success, failure, skip) calls this again
    reverted = any(d.state(n).status == states.REVERTED for n in d.view.specs)
    forget_plan(d)
    d.set_run(states.REVERTED if reverted else states.FAILED)


def start_revert(d: Draft, name: str) -> None:
    """Send the revert request of a completed (or failed) task; for a map node, of its last
    element owed one (the others follow one by one, `reverted`)."""
    st = d.state(name)
    states.check_task(st.status, states.REVERTING)
    attempt = int(st.attempt)
    node = is_map_node(d, name)
    req = None if node else d.request(name, attempt, protocol.MODE_REVERT)
    d.set_task(name, st.with_(status=states.REVERTING, revert_started_ms=d.at))
    failed = st.status == states.FAILED and not node
    d.hist(
        name, st.status, states.REVERTING, attempt, **({"note": "reverting its failure"} if failed else {})
    )
    if req is None:
        start_revert(d, elements_to_revert(d, name)[0])
    else:
        d.send(req)


def reverted(d: Draft, name: str) -> None:
    """The revert handler of ``name`` ran: its results leave the run's data; a map node's next
    element is reverted, or after the last one the node is REVERTED; then the next step."""
    if not d.view.full:
        raise Need()
    d.clear_data(d.view.spec(name).provides)
    item = keys.item_of(name)
    if item is not None and d.state(item[0]).status == states.REVERTING:
        node = item[0]
        rest = elements_to_revert(d, node)
        if rest:
            start_revert(d, rest[0])
            return
        nst = d.state(node)
        d.set_task(node, nst.with_(status=states.REVERTED, revert_finished_ms=d.at))
        d.hist(node, states.REVERTING, states.REVERTED, int(nst.attempt), note="its elements were reverted")
        d.clear_data(d.view.spec(node).provides)
    if d.run_status == states.REVERTING:
        revert_step(d)


def forget_plan(d: Draft) -> None:
    """Runs that failed before compensation was decided step by step kept a revert plan."""
    if d.view.meta.get("plan"):
        d.set_meta_list("plan", [])


# --- a revert's end, and its lease -------------------------------------------------------
#
# A revert handler that runs long is leased like a task body (G6): its worker acknowledges
# the request early and renews a lease in Redis. If the lease expires (the worker died or
# froze), the request is gone from the broker, so the engine sends it again (a new message,
# the same attempt and idempotency key), at most ``delivery_limit`` times.


def end_revert_lease(d: Draft, name: str) -> None:
    """The revert ended: forget its lease and lease timer, if it had one."""
    st = d.state(name)
    if st.lease_until_ms is None:
        return
    d.cancel.append(
        protocol.timer_id(protocol.TIMER_LEASE, d.run_id, name, st.attempt, str(st.lease_until_ms))
    )
    d.deletes.setdefault(keys.LEASES, []).append(name)
    d.set_task(name, st.with_(lease_until_ms=None))


def revert_lease_expired(d: Draft, name: str) -> None:
    """No heartbeat renewed the lease of ``name``'s revert: send the revert again, or, once
    it has been sent ``delivery_limit`` times, fail it (a handler that kills its workers)."""
    st = d.state(name)
    attempt = int(st.attempt)
    sends = (st.revert_sends or 0) + 1
    d.deletes.setdefault(keys.LEASES, []).append(name)
    msg = f"the revert's lease expired (no heartbeat for {d.rules.lease_s:g} s)"
    if sends >= d.rules.delivery_limit:
        d.set_task(name, st.with_(lease_until_ms=None, revert_sends=sends))
        err = {"type": "LeaseExpired", "message": f"{msg} {sends} time(s)", "types": ["LeaseExpired"]}
        revert_failed(d, name, err, "")
        return
    d.set_task(name, st.with_(lease_until_ms=None, revert_sends=sends))
    req = d.request(name, attempt, protocol.MODE_REVERT)
    d.send(replace(req, id=f"{req.id}:{sends}"))  # a new message: the first one was acknowledged
    d.hist(name, states.REVERTING, states.REVERTING, attempt, note=f"{msg}: revert sent again")


def revert_failed(d: Draft, name: str, error: dict[str, Any], worker: str) -> None:
    """The revert handler of ``name`` failed: the task FAILED, and the run FAILED with a
    RevertFailed error naming it (compensation stops: what is left stays for an operator)."""
    st = d.state(name)
    err = error_dict(error)
    attempt = int(st.attempt)
    d.set_task(name, st.with_(status=states.FAILED, revert_finished_ms=d.at, revert_error=err))
    d.hist(name, states.REVERTING, states.FAILED, attempt, error_type=err["type"], error=err["message"])
    item = keys.item_of(name)
    if item is not None and d.state(item[0]).status == states.REVERTING:  # its map node too
        nst = d.state(item[0])
        d.set_task(item[0], nst.with_(status=states.FAILED, revert_finished_ms=d.at, revert_error=err))
        d.hist(item[0], states.REVERTING, states.FAILED, int(nst.attempt), note=f"revert of {name} failed")
    if d.run_status != states.REVERTING:
        return
    raw_err = d.view.meta.get("error")
    cause = protocol.unpack(raw_err) if raw_err else {}
    failure = {
        "type": "RevertFailed",
        "message": f"revert of task {name!r} failed: {err['type']}: {err['message']}",
        "traceback": err["traceback"],
        "task": name,
        "attempt": attempt,
        "cause": cause,
    }
    d.write(keys.META, "error", protocol.pack(failure))
    forget_plan(d)
    d.set_run(states.FAILED, task=name, error_type="RevertFailed", error=failure["message"])
