"""Retry scopes (`runner.define.scopes`), as functions of the draft ``d``: a flow with a
retry controller reverts its own completed tasks and runs again when one of its tasks fails
for good; exhausted, it hands the failure to the enclosing scope, or to the run.

A scope's definition is in the run's meta (``scopes``, from `FlowSpec.scopes`), its state
in ``scope_state``: scope -> {"attempt", "status" (RUNNING, REVERTING, FAILED)}. A scope
starts when the first of its tasks is scheduled (`enter`), which provides the controller's
first value. While it reverts, its tasks start nothing: what still runs is waited for, then
its completed tasks are reverted successors first (`revert.next_revert` among its tasks),
then `restart` resets them (PENDING, their attempt numbers kept, so every request and result
id stays unique), recounts the joins its tasks had counted, and schedules its entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import states
from runner.decide import revert
from runner.decide.draft import Draft
from runner.decide.records import TaskState
from runner.decide.view import NOT_TAKEN, Need
from runner.define import conditions
from runner.define.scopes import FOR_EACH, PARAMETERIZED, TIMES
from runner.define.spec import END
from runner.protocol import pack, unpack
from runner.store import keys

_STATE = "scope_state"


@dataclass
class Acts:
    """What a scope's decision leaves for `runner.decide.progress` to do (this module does
    not schedule): fail the run with ``error``, schedule, advance past skipped tasks."""

    error: dict[str, Any] | None = None
    schedule: list[tuple[str, int, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def defs(d: Draft) -> dict[str, Any]:
    raw = d.view.meta.get("scopes")
    return dict(unpack(raw)) if raw else {}


def scope_states(d: Draft) -> dict[str, dict[str, Any]]:
    """The scopes' states, fenced as read: a decision taken on them (a task ending while its
    scope is, or is not yet, reverting) conflicts with a change of them on another engine."""
    if not d.view.meta.get("scopes"):
        return {}  # a run without retry scopes: no state, and no guard on every event's commit
    d.guard(keys.META, _STATE, d.view.meta.get(_STATE))
    raw = d.writes.get(keys.META, {}).get(_STATE, d.view.meta.get(_STATE))
    return {str(k): dict(v) for k, v in unpack(raw).items()} if raw else {}


def _save(d: Draft, all_states: Mapping[str, Any]) -> None:
    d.guard(keys.META, _STATE, d.view.meta.get(_STATE))
    d.write(keys.META, _STATE, pack(dict(all_states)))


def chain(d: Draft, task: str) -> list[str]:
    """The retry scopes holding ``task``, innermost first."""
    if keys.item_of(task) is not None or not d.view.meta.get("scopes"):
        return []
    found, out, s = defs(d), [], d.view.spec(task).scope
    while s:
        out.append(s)
        s = found[s]["parent"]
    return out


def reverting(d: Draft, task: str) -> bool:
    """Whether a scope holding ``task`` is reverting (its tasks start nothing)."""
    sts = scope_states(d) if d.view.meta.get("scopes") else {}
    return any(sts.get(s, {}).get("status") == states.REVERTING for s in chain(d, task))


def value(d: Draft, ctl: Mapping[str, Any], attempt: int) -> tuple[bool, Any]:
    """Whether the controller allows ``attempt`` (1-based), and its value."""
    if ctl["kind"] == TIMES:
        return attempt <= int(ctl["attempts"]), attempt
    vals: Any = ctl.get("values")
    if ctl["kind"] == PARAMETERIZED:
        raw = d.data([ctl["rebind"]])[ctl["rebind"]]
        vals = unpack(raw) if raw is not None else None
    if ctl["kind"] not in (FOR_EACH, PARAMETERIZED) or not isinstance(vals, list | tuple):
        return False, None
    return (True, vals[attempt - 1]) if attempt <= len(vals) else (False, None)


def _start(d: Draft, s: str, attempt: int, val: Any, old: str, why: str) -> None:
    """Attempt ``attempt`` of scope ``s`` begins: its value provided, in the history."""
    ctl = defs(d)[s]["controller"]
    if ctl["provides"]:
        d.set_data({ctl["provides"]: pack(val)})
    _hist(d, s, old, states.RUNNING, attempt, note=why, value=val)


def _hist(d: Draft, s: str, old: str, new: str, attempt: int, **extra: Any) -> None:
    """A history entry of scope ``s`` (its ``retry``: the controller's kind)."""
    d.hist(s, old, new, attempt, retry=defs(d)[s]["controller"]["kind"], **extra)


def enter(d: Draft, task: str) -> dict[str, Any] | None:
    """``task`` is about to be scheduled: start the scopes holding it that have not started
    (outermost first). The run's error if one cannot (a `ParameterizedForEach` over no
    values)."""
    sc = chain(d, task)
    if not sc:
        return None
    sts = scope_states(d)
    for s in reversed(sc):
        if s in sts:
            if not sts[s].get("attempt"):  # it could not start: the run failed
                return {
                    "type": "RetryExhausted",
                    "message": f"{s!r} could not start",
                    "task": task,
                    "scope": s,
                }
            continue
        ctl = defs(d)[s]["controller"]
        ok, val = value(d, ctl, 1)
        if not ok:
            msg = f"the retry controller of {s!r} has no value to try ({ctl.get('rebind')!r} is empty or not a list)"
            sts[s] = {"attempt": 0, "status": states.FAILED}
            _save(d, sts)
            return {"type": "RetryExhausted", "message": msg, "task": task, "scope": s}
        sts[s] = {"attempt": 1, "status": states.RUNNING}
        _save(d, sts)
        _start(d, s, 1, val, states.PENDING, f"attempt 1 of {_total(d, ctl)}")
    return None


def _total(d: Draft, ctl: Mapping[str, Any]) -> str:
    if ctl["kind"] == TIMES:
        return str(ctl["attempts"])
    if ctl["kind"] == FOR_EACH:
        return str(len(ctl["values"]))
    raw = d.data([ctl["rebind"]])[ctl["rebind"]]
    vals = unpack(raw) if raw is not None else None
    return str(len(vals)) if isinstance(vals, list | tuple) else "?"


def on_failure(d: Draft, task: str, error: Mapping[str, Any]) -> Acts | None:
    """``task`` failed for good: its innermost scope's controller decides, unless it has
    none or the run is not running (None: the run fails)."""
    sc = chain(d, task)
    if not sc or d.run_status not in (states.RUNNING, states.PAUSED):
        return None
    acts = Acts()
    outer = _outermost_reverting(d, sc)
    if outer is not None:  # an enclosing scope reverts: it runs this one again too
        step(d, outer, acts)
    else:
        handle(d, sc[0], error, acts)
    return acts


def _outermost_reverting(d: Draft, sc: list[str]) -> str | None:
    sts = scope_states(d)
    found = [s for s in sc if sts.get(s, {}).get("status") == states.REVERTING]
    return found[-1] if found else None


def handle(d: Draft, s: str, error: Mapping[str, Any], acts: Acts) -> None:
    """A failure reached scope ``s``: revert it and try its next value, or, exhausted, pass
    the failure on (to the enclosing scope; with ``revert_all`` or at the top, to the run)."""
    sts = scope_states(d)
    st = sts.get(s) or {"attempt": 1, "status": states.RUNNING}
    sc = defs(d)[s]
    ctl, attempt = sc["controller"], int(st["attempt"])
    if st["status"] == states.REVERTING:
        step(d, s, acts)
        return
    what = f"{error.get('type', '')}: {error.get('message', '')} (task {error.get('task', '')})"
    if st["status"] == states.RUNNING:
        ok, _ = value(d, ctl, attempt + 1)
        if ok:
            sts[s] = {"attempt": attempt, "status": states.REVERTING}
            _save(d, sts)
            note = f"attempt {attempt} failed: {what}; reverting the flow before attempt {attempt + 1}"
            _hist(d, s, states.RUNNING, states.REVERTING, attempt, note=note)
            step(d, s, acts)
            return
        sts[s] = {"attempt": attempt, "status": states.FAILED}
        _save(d, sts)
        where = "the whole run" if ctl["revert_all"] or not sc["parent"] else f"the flow {sc['parent']!r}"
        _hist(
            d,
            s,
            states.RUNNING,
            states.FAILED,
            attempt,
            note=f"exhausted after {what}; failure goes to {where}",
        )
    if ctl["revert_all"] or not sc["parent"]:
        acts.error = {**error, "scope": s}
    else:
        handle(d, sc["parent"], error, acts)


def step(d: Draft, s: str, acts: Acts) -> None:
    """Scope ``s`` reverts: wait for its active tasks, revert the next completed one, or,
    nothing left, run it again."""
    if not d.view.full:
        raise Need()
    d.guard_tasks_read()  # waiting on a task another engine ends meanwhile must be re-decided
    members = set(defs(d)[s]["members"])
    if any(d.state(m).status == states.REVERTING or revert.active(d, m) for m in members):
        return  # the one in flight calls this again when it ends
    name = revert.next_revert(d, among=members)
    if name is not None:
        revert.start_revert(d, name)
        return
    restart(d, s, acts)


def after_end(d: Draft, task: str) -> Acts | None:
    """A task of a reverting scope ended (success, revert): the scope's next step; None if
    no scope of it reverts (the task goes on as usual)."""
    if d.run_status not in (states.RUNNING, states.PAUSED):
        return None
    outer = _outermost_reverting(d, chain(d, task))
    if outer is None:
        return None
    acts = Acts()
    step(d, outer, acts)
    return acts


def resume(d: Draft) -> Acts:
    """The run was retried: a scope that was reverting when it failed takes its next step."""
    acts = Acts()
    for s, st in scope_states(d).items():
        if st.get("status") == states.REVERTING:
            step(d, s, acts)
    return acts


def restart(d: Draft, s: str, acts: Acts) -> None:
    """Scope ``s`` reverted: its tasks PENDING again, its joins recounted, the next attempt
    provided and its entries scheduled."""
    found = defs(d)
    sc = found[s]
    members = list(sc["members"])
    sts = scope_states(d)
    attempt = int(sts[s]["attempt"]) + 1
    _, val = value(d, sc["controller"], attempt)
    for m in members:
        st = d.state(m)
        d.set_task(m, TaskState(status=states.PENDING, attempt=st.attempt, free_attempts=st.attempt or None))
        d.clear_data(d.view.spec(m).provides)
        if st.status != states.PENDING:
            d.hist(m, st.status, states.PENDING, int(st.attempt), note=f"flow {s} runs again")
    for inner in found:
        if inner != s and s in _parents(found, inner):
            sts.pop(inner, None)  # an inner scope starts over with its first value
    sts[s] = {"attempt": attempt, "status": states.RUNNING}
    _save(d, sts)
    _start(d, s, attempt, val, states.REVERTING, f"attempt {attempt} of {_total(d, sc['controller'])}")
    inside = set(members)
    held = d.meta_list("held")
    if any(str(t) in inside for t, _ in held):  # held by a pause: the attempt that ended
        d.set_meta_list("held", [[t, a] for t, a in held if str(t) not in inside])
    _recount(d, inside)
    for m in revert.successors_first(d)[::-1]:
        spec = d.view.spec(m)
        if m not in inside or any(p in inside for p in spec.preds):
            continue
        done, ok = d.join(m), d.join(m) - d.join(m + NOT_TAKEN)
        ready = ok >= spec.needs if spec.join else done == len(spec.preds) and ok > 0
        if not spec.preds or ready:
            acts.schedule.append((m, int(d.state(m).attempt) + 1, f"attempt {attempt} of flow {s}"))
        elif not spec.join and done == len(spec.preds):  # no incoming edge taken
            d.set_task(m, d.state(m).with_(status=states.SKIPPED, finished_ms=d.at))
            d.hist(m, states.PENDING, states.SKIPPED, 0, note="no incoming edge taken")
            acts.skipped.append(m)


def _parents(found: Mapping[str, Any], s: str) -> list[str]:
    out, p = [], found[s]["parent"]
    while p:
        out.append(p)
        p = found[p]["parent"]
    return out


def _recount(d: Draft, inside: set[str]) -> None:
    """The joins of the scope's tasks and of what follows them, as counted by the tasks
    outside the scope alone (those inside count again as they run again)."""
    specs = d.view.specs
    targets = set(inside) | {x for m in inside for x in specs[m].succs if x not in inside}
    for t in sorted(targets):
        preds = [n for n, sp in specs.items() if END in sp.succs] if t == END else specs[t].preds
        outside = [p for p in preds if p not in inside]
        done = [p for p in outside if d.state(p).status in (states.SUCCESS, states.SKIPPED)]
        no = [p for p in done if d.state(p).status == states.SKIPPED or not _taken(d, p, t)]
        for name, n in ((t, len(done)), (t + NOT_TAKEN, len(no))):
            d.guard(keys.JOINS, name, d.view.joins.get(name))
            d.write(keys.JOINS, name, str(n).encode())


def _taken(d: Draft, p: str, t: str) -> bool:
    cond = d.view.spec(p).when.get(t)
    if cond is None:
        return True
    raw = d.data([cond["value"]])[cond["value"]]
    return conditions.holds(cond, None if raw is None else unpack(raw))


def revert_failed(d: Draft, task: str, error: Mapping[str, Any]) -> None:
    """A revert handler of a reverting scope failed: the run FAILED (what is left stays for
    an operator), as when the run's own compensation fails."""
    if d.run_status not in (states.RUNNING, states.PAUSED) or not any(
        scope_states(d).get(s, {}).get("status") == states.REVERTING for s in chain(d, task)
    ):
        return
    msg = f"revert of task {task!r} failed: {error.get('type', '')}: {error.get('message', '')}"
    d.write(keys.META, "error", pack({"type": "RevertFailed", "message": msg, "task": task}))
    d.set_meta_list("held", [])
    d.set_run(states.FAILED, task=task, error_type="RevertFailed", error=msg)
