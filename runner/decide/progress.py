"""How a run progresses, as functions of the draft ``d``: schedule a task, map over items,
end an attempt (success, failure, retry), count joins and advance to successors, finish.

These rules call each other (a schedule starts a map, whose bad input fails the attempt,
whose retry schedules again), so they live together; compensation, which they only start,
is in `revert`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner import protocol, states
from runner.decide import revert, scopes
from runner.decide.draft import WAIT_TIMER, Draft
from runner.decide.records import TaskState, error_dict
from runner.decide.view import NOT_TAKEN, join_fields, start_reads, successors
from runner.define import conditions
from runner.define.retry import Retry
from runner.define.spec import END, TaskSpec, item_input
from runner.protocol import pack, unpack
from runner.store import keys


def schedule(d: Draft, name: str, attempt: int, note: str = "") -> None:
    """Send the task's request for this attempt; held instead while the run is paused."""
    st = d.state(name)
    extra = {"note": note} if note else {}
    if d.run_status == states.PAUSED:
        held = d.meta_list("held")
        if [name, attempt] not in held:
            d.set_meta_list("held", [*held, [name, attempt]])
        d.hist(name, st.status, st.status, attempt, note="held: the run is paused")
        return
    if scopes.reverting(d, name):  # its flow's retry controller starts it again once reverted
        d.hist(name, st.status, st.status, attempt, note="not started: its flow is reverting")
        acts = scopes.after_end(d, name)  # the flow may have waited for it (handed back unstarted)
        if acts is not None:
            scoped(d, acts)
        return
    err = scopes.enter(d, name)
    if err is not None:  # a retry scope of the task cannot start
        fail_run(d, err)
        return
    if d.view.spec(name).map is not None and keys.item_of(name) is None:
        start_map(d, name, attempt, note)
        return
    states.check_task(st.status, states.SCHEDULED)
    req = d.request(name, attempt)
    new = TaskState(
        status=states.SCHEDULED,
        attempt=attempt,
        scheduled_ms=d.at,
        free_attempts=st.free_attempts,  # carried over from earlier attempts
        leases_lost=st.leases_lost,
    )
    d.set_task(name, new)
    d.send(req)
    d.hist(name, st.status, states.SCHEDULED, attempt, **extra)


# --- map (with-items) ----------------------------------------------------------------


def start_map(d: Draft, name: str, attempt: int, note: str = "") -> None:
    """A map node starts: store its items one per field, start the first ``limit``.

    A later attempt (a retried run) keeps the elements that succeeded, lets running ones
    finish, and starts the others again.
    """
    spec = d.view.spec(name)
    assert spec.map is not None
    st = d.state(name)
    over = spec.args[spec.map["param"]]
    raw = d.data([over])[over]
    items = None if raw is None else unpack(raw)
    states.check_task(st.status, states.SCHEDULED)
    extra = {"note": note} if note else {}
    d.hist(name, st.status, states.SCHEDULED, attempt, **extra)
    n = len(items) if isinstance(items, list) else 0
    limit = int(spec.map.get("limit") or 0) or n
    names = [keys.item_name(name, i) for i in range(n)]
    fresh = attempt == 1
    if not fresh:
        d.view.prefetch({keys.TASKS: names})
    done = 0 if fresh else sum(1 for x in names if d.state(x).status == states.SUCCESS)
    new = TaskState(
        status=states.RUNNING,
        attempt=attempt,
        scheduled_ms=d.at,
        started_ms=d.at,
        free_attempts=st.free_attempts,
        leases_lost=st.leases_lost,
        items=n,
        next_item=0,
        items_done=done,
        fresh=fresh,
    )
    d.set_task(name, new)
    kept = f"; {done} kept from before" if done else ""
    d.hist(
        name,
        states.SCHEDULED,
        states.RUNNING,
        attempt,
        note=f"mapping {n} items, {limit} at a time{kept}",
    )
    if not isinstance(items, list):
        got = type(items).__name__ if raw is not None else "nothing"
        fail_attempt(d, name, {"type": "TypeError", "message": f"map over {over!r} needs a list, got {got}"})
        return
    if fresh:
        d.set_data({item_input(x): pack(v) for x, v in zip(names, items, strict=True)})
    active = 0 if fresh else sum(1 for x in names if d.state(x).status in states.TASK_ACTIVE)
    start_items(d, name, limit - active)
    if done == n:
        finish_map(d, name)


def start_items(d: Draft, node: str, count: int) -> None:
    """Start up to ``count`` elements of a running map node that still need to run."""
    st = d.state(node)
    n, nxt, fresh = (st.items or 0), (st.next_item or 0), bool(st.fresh)
    started = 0
    while nxt < n and started < count and d.run_status in (states.RUNNING, states.PAUSED):
        x = keys.item_name(node, nxt)
        nxt += 1
        if fresh:
            d.view.tasks.setdefault(x, None)  # never started: nothing to read
        else:
            d.view.prefetch(
                {keys.TASKS: [keys.item_name(node, i) for i in range(nxt - 1, min(n, nxt + count))]}
            )
        xs = d.state(x)
        if xs.status == states.PENDING:
            schedule(d, x, 1)
        elif xs.status == states.FAILED:  # failed for good before: a fresh retry budget
            d.set_task(x, xs.with_(retry_at_ms=None, free_attempts=xs.attempt))
            schedule(d, x, int(xs.attempt) + 1)
        else:
            continue  # succeeded, or still running from before
        started += 1
    d.set_task(node, d.state(node).with_(next_item=nxt))


def map_item_done(d: Draft, item: str) -> None:
    """An element succeeded: start the next one; after the last, gather the results."""
    node = (keys.item_of(item) or ("", 0))[0]
    st = d.state(node)
    if st.status != states.RUNNING:
        return  # the node failed: the element's result is recorded, nothing more
    d.set_task(node, st.with_(items_done=(st.items_done or 0) + 1))
    start_items(d, node, 1)
    if d.state(node).items_done == st.items:
        finish_map(d, node)


def finish_map(d: Draft, node: str) -> None:
    st = d.state(node)
    names = [keys.item_name(node, i) for i in range(st.items or 0)]
    vals = d.data(names)
    results = [None if vals[x] is None else unpack(vals[x]) for x in names]  # type: ignore[arg-type]
    d.set_task(node, end_attempt(d, node, st, status=states.SUCCESS, finished_ms=d.at))
    d.set_data({d.view.spec(node).provides[0]: pack(results)})
    d.hist(node, states.RUNNING, states.SUCCESS, int(st.attempt), note=f"{len(names)} items done")
    advance(d, node)


def end_attempt(d: Draft, name: str, st: TaskState, **changes: Any) -> TaskState:
    """Forget the timers and lease of the attempt that just ended; return its state, with
    ``changes`` (one copy)."""
    spec = d.view.spec(name)
    if spec.timeout_s:
        d.cancel.append(protocol.timer_id(protocol.TIMER_TIMEOUT, d.run_id, name, st.attempt))
    if st.wait_limit_s is not None:
        d.cancel.append(protocol.timer_id(protocol.TIMER_TIMEOUT, d.run_id, name, st.attempt, WAIT_TIMER))
    if st.lease_until_ms is not None:
        d.cancel.append(
            protocol.timer_id(protocol.TIMER_LEASE, d.run_id, name, st.attempt, str(st.lease_until_ms))
        )
        d.deletes.setdefault(keys.LEASES, []).append(name)
    return st.ended(**changes)


def implied_start(d: Draft, name: str, st: TaskState, worker: str) -> str:
    """A result can overtake its "started" event; history still shows the task RUNNING once."""
    if st.status != states.SCHEDULED:
        return str(st.status)
    d.hist(name, states.SCHEDULED, states.RUNNING, st.attempt, worker=worker, note="implied by its result")
    return states.RUNNING


# --- failure -----------------------------------------------------------------------


def fail_attempt(
    d: Draft, name: str, error: Mapping[str, Any], worker: str = "", lease_lost: bool = False
) -> None:
    """The current attempt failed: retry it if its policy allows, else fail the run."""
    st = d.state(name)
    err = error_dict(error)
    states.check_task(st.status, states.FAILED)
    old = implied_start(d, name, st, worker)
    new = end_attempt(d, name, st, status=states.FAILED, finished_ms=d.at, error=err, worker=worker)
    spec = d.view.spec(name)
    attempt = int(st.attempt)
    live = d.run_status in (states.RUNNING, states.PAUSED) and not scopes.reverting(d, name)
    if lease_lost and live and (st.leases_lost or 0) + 1 < d.rules.delivery_limit:
        # The worker vanished: like a redelivery, this costs no try of the retry policy.
        new = new.with_(leases_lost=(st.leases_lost or 0) + 1, free_attempts=(st.free_attempts or 0) + 1)
        d.set_task(name, new)
        d.hist(name, old, states.FAILED, attempt, error_type=err["type"], error=err["message"])
        schedule(d, name, attempt + 1, note="re-dispatched: the lease of the previous attempt expired")
        return
    tries = attempt - (st.free_attempts or 0)
    pol = Retry.from_data(spec.retry) if spec.retry else None
    if pol is not None and live and pol.allows(tries, err["types"]):
        delay = pol.delay_before(tries, f"{d.run_id}:{name}:{attempt}")
        note = f"retry {tries + 1} of {pol.attempts} in {delay:.3g} s"
        if delay > 0:
            due = d.now + int(delay * 1000)
            new = new.with_(retry_at_ms=due)
            d.timer(protocol.TIMER_RETRY, due, name, attempt + 1)
        d.set_task(name, new)
        d.hist(name, old, states.FAILED, attempt, error_type=err["type"], error=err["message"], note=note)
        if delay <= 0:
            schedule(d, name, attempt + 1)
        return
    d.set_task(name, new)
    d.hist(name, old, states.FAILED, attempt, error_type=err["type"], error=err["message"])
    item = keys.item_of(name)
    if item is not None:  # an element gave up: its map node fails with it
        node, index = item
        nst = d.state(node)
        node_attempt = int(nst.attempt)
        if nst.status != states.RUNNING:
            if d.run_status == states.REVERTING:
                revert.revert_step(d)  # compensation may have waited for this element
            return
        nerr = dict(err, message=f"item {index}: {err['message']}")
        d.set_task(node, end_attempt(d, node, nst, status=states.FAILED, finished_ms=d.at, error=nerr))
        d.hist(
            node,
            states.RUNNING,
            states.FAILED,
            node_attempt,
            error_type=err["type"],
            error=nerr["message"],
        )
        fail_run(d, {**nerr, "task": node, "attempt": node_attempt, "item": index})
        return
    error = {**err, "task": name, "attempt": attempt}
    acts = scopes.on_failure(d, name, error)  # a retry scope's controller takes it, or the run fails
    if acts is None:
        fail_run(d, error)
    else:
        scoped(d, acts)


def fail_run(d: Draft, error: Mapping[str, Any]) -> None:
    """Fail the run; with compensation to do, revert its completed tasks first."""
    if d.run_status == states.REVERTING:
        revert.revert_step(d)  # a task ended while compensating: maybe the next step
        return
    if d.run_status not in (states.RUNNING, states.PAUSED):
        return  # already failed or cancelled: the failure is in the task's history
    extra = {
        "task": error.get("task", ""),
        "error_type": error.get("type", ""),
        "error": str(error.get("message", "")),  # the history line shows what went wrong
    }
    d.write(keys.META, "error", pack(dict(error)))
    d.set_meta_list("held", [])
    if not int(d.view.meta.get("reverts") or 0):
        d.set_run(states.FAILED, **extra)
        return
    done = revert.to_revert(d)
    if not done and not revert.revertable_running(d):
        d.set_run(states.FAILED, **extra)
        return
    d.set_run(states.REVERTING, **extra, note=f"reverting {len(done)} completed task(s)")
    revert.revert_step(d)


def join_outcome(d: Draft, s: str, taken: bool) -> str | None:
    """Count one more decided predecessor of ``s``: "run", "skip", or None (not yet)."""
    done, no = d.join(s) + 1, d.join(s + NOT_TAKEN) + (0 if taken else 1)
    if s == END:
        return "run" if done == int(d.view.meta["sinks"] or 0) else None
    spec = d.view.spec(s)
    ok, total = done - no, len(spec.preds)
    if spec.join:  # at least N taken edges; decided the moment the N-th arrives
        if taken and ok == spec.needs:
            return "run"
        return "skip" if done == total and ok < spec.needs else None
    return ("run" if ok > 0 else "skip") if done == total else None


def join_ready(d: Draft, s: str) -> bool:
    """Whether ``s``'s join is already satisfied (for a retried run's pending tasks)."""
    spec = d.view.spec(s)
    done, no = d.join(s), d.join(s + NOT_TAKEN)
    if spec.join:
        return done - no >= spec.needs
    return done == len(spec.preds) and done - no > 0


def _taken(d: Draft, spec: TaskSpec, s: str) -> bool:
    cond = spec.when.get(s)
    if cond is None:
        return True
    raw = d.data([cond["value"]])[cond["value"]]
    return conditions.holds(cond, None if raw is None else unpack(raw))


def advance(d: Draft, name: str, taken: bool = True) -> None:
    """``name`` finished (or was skipped): count it in its successors' joins, then start,
    skip or finish what that decides."""
    spec = d.view.spec(name)
    # One read, not one per successor: their specs and join counts.
    d.view.prefetch({keys.SPEC: successors(spec), keys.JOINS: join_fields(spec.succs)})
    edges = [(s, taken and _taken(d, spec, s)) for s in spec.succs]
    live = d.run_status in (states.RUNNING, states.PAUSED)
    # What the successors that start will need, in one round trip (a tentative look: the
    # outcomes are decided again below, as the draft stands when each one's turn comes).
    starts = {s: d.view.spec(s) for s, edge in edges if s != END and join_outcome(d, s, edge) == "run"}
    if live and starts:
        tasks, data = start_reads(starts, d.new_data)
        d.view.prefetch({keys.TASKS: tasks, keys.DATA: data})
    for s, edge in edges:
        # Decided now, not before the loop: skipping an earlier successor may have reached
        # this join already within this same commit.
        out = join_outcome(d, s, edge)
        d.guard(keys.JOINS, s, d.view.joins.get(s))
        d.write(keys.JOINS, s, str(d.join(s) + 1).encode())
        if not edge:
            d.guard(keys.JOINS, s + NOT_TAKEN, d.view.joins.get(s + NOT_TAKEN))
            d.write(keys.JOINS, s + NOT_TAKEN, str(d.join(s + NOT_TAKEN) + 1).encode())
        if out is None:
            continue
        if out == "skip" and s != END:
            # Bookkeeping, whatever the run's state: a retried run must find its joins whole.
            st = d.state(s)
            if st.status == states.SKIPPED:
                continue  # skipped already, by a cancel of the run: there is nothing more to count
            states.check_task(st.status, states.SKIPPED)
            d.set_task(s, st.with_(status=states.SKIPPED, finished_ms=d.at))
            why = (
                "no incoming edge taken"
                if not spec.when.get(s)
                else f"condition false: {_describe(spec.when[s])}"
            )
            d.hist(s, st.status, states.SKIPPED, 0, note=why)
            advance(d, s, taken=False)
        elif d.run_status not in (states.RUNNING, states.PAUSED):
            continue  # a failed run starts nothing; a retry looks at its joins again
        elif s == END:
            finish_run(d)
        else:
            schedule(d, s, int(d.state(s).attempt) + 1)  # past 1 after a retry scope ran it


def finish_run(d: Draft) -> None:
    """Every sink is done: the run succeeded; its result is the flow's outputs."""
    outputs = unpack(d.view.meta["outputs"] or pack([]))
    vals = d.data(outputs)
    result = {o: unpack(raw) for o in outputs if (raw := vals.get(o)) is not None}
    d.write(keys.META, "result", pack(result))
    d.set_meta_list("held", [])
    d.set_run(states.SUCCESS)


def _describe(cond: Mapping[str, Any]) -> str:
    return str(conditions.When(cond["value"], cond["op"], cond["arg"]))


def succeed(
    d: Draft, name: str, values: Mapping[str, Any], worker: str, ms: Any = None, note: str = ""
) -> None:
    """The current attempt of ``name`` produced ``values``: SUCCESS, then its successors."""
    e = d.event
    st = d.state(name)
    spec = d.view.spec(name)
    if sorted(values) != sorted(spec.provides):
        msg = f"result names {sorted(values)} differ from provides {spec.provides}"
        fail_attempt(d, name, {"type": "ProtocolError", "message": msg}, worker)
        return
    states.check_task(st.status, states.SUCCESS)
    old = implied_start(d, name, st, worker)
    took = {"duration_ms": ms} if ms is not None else {}
    new = end_attempt(d, name, st, status=states.SUCCESS, finished_ms=d.at, worker=worker, error=None, **took)
    d.set_task(name, new)
    d.set_data({k: pack(v) for k, v in values.items()})
    d.hist(name, old, states.SUCCESS, e.attempt, worker=worker, **({"note": note} if note else {}))
    if scopes.reverting(d, name) and (acts := scopes.after_end(d, name)) is not None:
        scoped(d, acts)  # finished while its retry scope reverts: reverted too, nothing follows it
        return
    if keys.item_of(name) is not None:
        map_item_done(d, name)
        if d.run_status == states.REVERTING:
            # Compensation waits for a map node's running elements (`revert.active`): the
            # last of them ending is what lets the map's predecessors be reverted.
            revert.revert_step(d)
        return
    if d.run_status == states.REVERTING:
        revert.revert_step(d)  # finished after the run failed: reverted too, before its inputs
    advance(d, name)


def scoped(d: Draft, acts: scopes.Acts) -> None:
    """Carry out what a retry scope decided (`scopes`): start its entries, advance past the
    ones it skipped, or fail the run (its compensation)."""
    for name, attempt, note in acts.schedule:
        schedule(d, name, attempt, note=note)
    for name in acts.skipped:
        advance(d, name, taken=False)
    if acts.error is not None:
        fail_run(d, acts.error)
