"""Run control (DESIGN G7): cancel, pause, resume and retry, decided like any other event.

Each is an event on the engine queue, so it is durable the moment the broker confirms it,
holds with no worker online, and is applied once by whichever engine takes it. Its effect is
run state in Redis that every later decision reads: a paused run holds the tasks that become
ready (`progress.schedule`) until it is resumed; a cancelled run is terminal, so later results
are recorded and schedule nothing, and the heartbeats of its long tasks report it to them.
"""

from __future__ import annotations

from runner import protocol, states
from runner.decide import children, progress, scopes
from runner.decide.draft import Draft
from runner.decide.records import NOT_STARTED, TaskState
from runner.decide.view import NOT_TAKEN, Need
from runner.define.spec import END
from runner.protocol import pack
from runner.store import keys


def _who(d: Draft) -> dict[str, str]:
    """Who asked, and why (shown by status as the run's last control); recorded in meta."""
    out = {"by": str(d.event.body.get("by", ""))}
    if d.event.body.get("reason"):
        out["reason"] = str(d.event.body["reason"])[:500]
    d.write(keys.META, "control", pack({"action": d.event.kind.rpartition(".")[2], **out, "at": d.at}))
    return out


def decide_cancel(d: Draft) -> None:
    """Cancel a pending, running or paused run: tasks not yet running are SKIPPED."""
    if not states.control_allowed("cancel", d.run_status):
        d.note("run", 0, f"cancel ignored: the run is {d.run_status}")
        return
    if not d.view.full:
        raise Need()
    d.guard_tasks_read()  # a task scheduled meanwhile on another engine must be skipped too
    if d.run_status is None:  # cancelled before its submit was applied: the submit will find it
        d.write(keys.META, "created_ms", str(d.at).encode())
        d.view.meta["created_ms"] = str(d.at).encode()
    for name in sorted(d.view.specs):
        st = d.state(name)
        if st.status in (states.PENDING, states.SCHEDULED):
            _skip(d, name, st)
        elif st.status == states.WAITING:  # nothing holds it: no completion will be taken
            if st.child:
                children.cancel_event(d, st.child, "its parent run was cancelled")
            ended = progress.end_attempt(d, name, st, status=states.SKIPPED, finished_ms=d.at)
            d.set_task(name, ended)
            d.hist(name, st.status, states.SKIPPED, int(st.attempt), note="run cancelled while it waited")
        elif st.status == states.RUNNING and d.view.spec(name).map is not None:
            # a running map: its elements not yet running are skipped too (the node stays
            # RUNNING, as when its run fails; the elements running finish)
            for i in range(int(st.next_item or 0)):
                x = keys.item_name(name, i)
                xs = d.state(x)
                if xs.status in (states.PENDING, states.SCHEDULED):
                    _skip(d, x, xs)
    d.set_meta_list("held", [])
    d.set_run(states.CANCELLED, **_who(d))


def _skip(d: Draft, name: str, st: TaskState) -> None:
    d.set_task(name, st.with_(status=states.SKIPPED, finished_ms=d.at))
    d.hist(name, st.status, states.SKIPPED, int(st.attempt), note="run cancelled")


def decide_pause(d: Draft) -> None:
    """Pause a running run: running tasks finish; nothing new starts until it is resumed."""
    if not states.control_allowed("pause", d.run_status):
        d.note("run", 0, f"pause ignored: the run is {d.run_status}")
        return
    d.set_run(states.PAUSED, **_who(d))


def decide_resume(d: Draft) -> None:
    """Resume a paused run: start the tasks that became ready while it was paused."""
    if not states.control_allowed("resume", d.run_status):
        d.note("run", 0, f"resume ignored: the run is {d.run_status}")
        return
    held = d.meta_list("held")
    d.set_meta_list("held", [])
    d.set_run(states.RUNNING, **_who(d))
    for name, attempt in held:
        progress.schedule(d, str(name), int(attempt), note="released by resume")


def decide_retry(d: Draft) -> None:
    """Run a FAILED run again from its failed tasks, keeping every completed result."""
    if not states.control_allowed("retry", d.run_status):
        d.note("run", 0, f"retry ignored: the run is {d.run_status}")
        return
    if not d.view.full:
        raise Need()
    names = sorted(d.view.specs)
    if any(
        d.state(n).status in (states.REVERTING, states.REVERTED) or d.state(n).revert_error is not None
        for n in names
    ):
        d.note("run", 0, "retry refused: the run's compensation has run")
        return
    d.guard_tasks_read()  # a task that failed meanwhile on another engine is restarted too
    d.deletes.setdefault(keys.META, []).extend(["error", "finished_ms"])
    d.set_run(states.RUNNING, **_who(d))
    deadline = float(d.view.meta.get("deadline_s") or 0)
    if deadline > 0:  # a new deadline; the old one's timer is ignored when it fires
        tid = d.timer(
            protocol.TIMER_DEADLINE, d.now + int(deadline * 1000), extra=d.event.id.rsplit(":", 1)[-1]
        )
        d.write(keys.META, "deadline_timer", tid.encode())
    if d.join(END) >= int(d.view.meta.get("sinks") or 0):
        progress.finish_run(d)  # every sink finished after the failure: the run is in fact complete
        return
    for name in names:
        st = d.state(name)
        if st.status == states.FAILED:
            d.set_task(name, st.with_(retry_at_ms=None, free_attempts=st.attempt))
            progress.schedule(d, name, int(st.attempt) + 1, note="retry of the run")
        elif st.status == states.PENDING and st.attempt:  # returned unstarted by a pause, never run
            progress.schedule(d, name, int(st.attempt) + 1, note="retry of the run")
        elif st.status == states.PENDING and d.view.spec(name).preds:
            # fenced by the join as read: a predecessor that succeeds in the failed run
            # meanwhile (another engine) counts in it, and must start this task
            for j in (name, name + NOT_TAKEN):
                d.guard(keys.JOINS, j, d.view.joins.get(j))
            if progress.join_ready(d, name):
                progress.schedule(d, name, 1, note="retry of the run")
        elif st.status == states.RUNNING and d.view.spec(name).map is not None:
            resume_map(d, name, st)
    if d.view.meta.get("scopes"):  # a retry scope reverting when the run failed goes on
        progress.scoped(d, scopes.resume(d))


def resume_map(d: Draft, node: str, st: TaskState) -> None:
    """A map node left running when its run failed: start the elements it stopped starting
    (and any held by a pause, or whose retry found the run failed) up to its limit."""
    spec = d.view.spec(node)
    assert spec.map is not None
    n, nxt = (st.items or 0), (st.next_item or 0)
    names = [keys.item_name(node, i) for i in range(n)]
    active = sum(1 for x in names if d.state(x).status in states.TASK_ACTIVE)
    for x in names[:nxt]:
        xs = d.state(x)
        if xs.status == states.PENDING:  # held (or returned by a pause) when the run failed
            progress.schedule(d, x, int(xs.attempt) + 1, note="retry of the run")
            active += 1
        elif xs.status == states.FAILED and (xs.retry_at_ms is not None or _not_started(xs)):
            # its retry timer found the run failed, or a worker skipped it: the run had failed
            progress.schedule(d, x, int(xs.attempt) + 1, note="retry of the run")
            active += 1
    progress.start_items(d, node, (int(spec.map.get("limit") or 0) or n) - active)


def _not_started(st: TaskState) -> bool:
    return bool((st.error or {}).get("type") == NOT_STARTED)
