"""What must hold after a simulated seed, as pure functions of its two outcomes (the run under
faults and the same workload without them). Each returns the violations it finds, as text.

- every run finished, and the queues, pools and timers drained (liveness);
- each run's final status and result equal those of the fault-free run;
- every event applied by exactly one commit (G1; `tests.helpers.checks.reapplied_events`);
- no task succeeded twice at one attempt, nor at two attempts (a stale result accepted);
- every attempt that succeeded ran its body (G2), and every reverted task with a handler ran it;
- compensation in reverse dependency order: a task starts reverting only after each of its
  successors that is reverted has finished reverting;
- a REVERTED run left no handler owed a call: no task or map element with a handler still
  SUCCESS, none whose body failed still FAILED when its handler takes ``failure``;
- without faults no body ran twice;
- no unsent outbox entry, no leftover timer, nothing undelivered;
- and what tests/sim/checks_outside.py checks: control events, lazy completions, stray
  messages, dead letters (only for poison and malformed input), leases, timers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from runner import protocol
from runner.decide.records import NOT_STARTED
from runner.states import (
    FAILED,
    PAUSED,
    PENDING,
    REVERTED,
    REVERTING,
    RUN_TERMINAL,
    SCHEDULED,
    SUCCESS,
    TASK_ACTIVE,
)
from tests.helpers.checks import reapplied_events
from tests.sim.checks_outside import expected_differs, outside
from tests.sim.simulate import Outcome


def violations(base: Outcome, out: Outcome) -> list[str]:
    found: list[str] = []
    if base.stuck:
        found.append(f"fault-free run: {base.stuck}")
    if out.stuck:
        found.append(out.stuck)
    ev = out.evidence
    for rid, want in base.runs.items():
        got = out.runs.get(rid)
        own = expected_differs(rid, ev, got, base.evidence or ev)
        if own is not None:
            if own:
                found.append(own)
        elif got != want and not _failed_either_way(want, got, ev["history"].get(rid, []), ev["specs"][rid]):
            found.append(f"{rid}: ended {got}, fault-free {want}")
    found += outside(ev, out.runs)
    if base.evidence:
        found += [f"fault-free run: {v}" for v in outside(base.evidence, base.runs)]
    for rid, history in ev["history"].items():
        found += _history(rid, history, ev["specs"][rid], ev["executions"])
        found += _compensation(rid, out.runs.get(rid, ("",))[0], history, ev["specs"][rid])
    for rid, outbox in ev["outbox"].items():
        if outbox:
            found.append(f"{rid}: unsent outbox entries {sorted(outbox)}")
    # A lazy task still WAITING when its run ended otherwise keeps its wait timer until it
    # fires (then its attempt fails, and nothing follows): due later than the simulation, it is
    # no leftover. Any other timer of a finished run is.
    left = [
        t
        for t in ev["timers"]
        if not (t[1].endswith(":wait") and out.runs.get(t[0], ("",))[0] in RUN_TERMINAL)
    ]
    if left:
        found.append(f"leftover timers {left[:5]}")
    if ev["undelivered"]:
        found.append(f"{ev['undelivered']} messages undelivered or unacknowledged")
    if not set(out.faults) - {"lazy_duplicate", "lazy_forged"}:  # neither re-runs a body
        counts = Counter(k for k, _ in ev["executions"])
        twice = sorted(k for k, n in counts.items() if n > 1)
        if twice:
            found.append(f"executed twice without any fault: {twice[:5]}")
    return found


def _failed_either_way(want: Any, got: Any, history: list[Any], specs: dict[str, Any]) -> bool:
    """Both runs failed, one ending FAILED and the other REVERTED: which depends on timing, not
    on a fault's mishandling — a run that fails reverts the tasks with a revert handler that
    completed by then, and which had depends on how fast the failing task failed (a slow
    worker, a lost lease, a lost store reply delaying it). Accepted when the run under faults
    is consistent: REVERTED with every completed task that has a handler reverted, or FAILED
    with none completed (`_compensation` checks the rest)."""
    failing = (FAILED, REVERTED)
    if got is None or want[0] not in failing or got[0] not in failing or want[1] != got[1]:
        return False
    return not _compensation("", got[0], history, specs)


def _compensation(rid: str, status: str, history: list[Any], specs: dict[str, Any]) -> list[str]:
    """A REVERTED run reverted every task with a handler that completed; a FAILED one left
    none completed (it had nothing to revert when it failed, and nothing completes after),
    unless a revert failed (then the run is FAILED and compensation stopped)."""
    if status not in (FAILED, REVERTED):
        return []
    if any(h.scope == "run" and h.extra.get("error_type") == "RevertFailed" for h in history):
        return []  # a revert failed: compensation stops there, the rest stays as it is
    last: dict[str, str] = {}
    for h in history:
        if h.scope != "run" and h.old != h.new:
            last[h.scope] = h.new
    # (a map node's handler runs per element: the elements are checked, not the node, which
    # stays SUCCESS when it had none to revert — a map over an empty list)
    left = sorted(
        n
        for n, st in last.items()
        if st == SUCCESS
        and (s := specs.get(n.partition("[")[0]))
        and s.revert
        and not (s.map is not None and "[" not in n)
    )
    return [f"{rid}: ended {status} with completed tasks not reverted: {left[:5]}"] if left else []


def _skipped_while_failing(want: Any, got: Any, history: list[Any]) -> bool:
    """A run failed by a task of a retry scope that runs in parallel with others (unordered):
    whether a sibling completed first (and is reverted: REVERTED) or was skipped unstarted
    (nothing to revert: FAILED) is up to timing. Both are failures."""
    failing = (FAILED, REVERTED)
    if got is None or want[0] not in failing or got[0] not in failing or want[1] != got[1]:
        return False
    scoped = any("retry" in h.extra for h in history)  # both runs' histories: either skipped
    skipped = any(
        h.new == "SKIPPED" and str(h.extra.get("note", "")).startswith("not started") for h in history
    )
    return scoped and skipped


def _history(
    rid: str, history: list[Any], specs: dict[str, Any], executions: list[tuple[str, str]]
) -> list[str]:
    found = []
    again = reapplied_events(history)
    if again:
        found.append(f"{rid}: events applied by more than one commit: {sorted(again)[:5]}")
    # (a retry scope runs its tasks again: once per attempt, each attempt its own number)
    history = [h for h in history if "retry" not in h.extra]  # a retry scope's own lines
    succeeded = Counter(
        (h.scope, h.attempt) for h in history if h.scope != "run" and h.new == SUCCESS and h.old != SUCCESS
    )
    twice = sorted(t for t, n in succeeded.items() if n > 1)
    if twice:
        found.append(f"{rid}: tasks that succeeded more than once: {twice[:5]}")
    ran = {k for k, _ in executions}
    found += _attempts(rid, history)
    for h in history:
        if h.scope == "run" or h.old == h.new:
            continue
        spec = specs.get(h.scope)
        if spec is not None and spec.map is not None:
            continue  # a map node succeeds when its elements do; it runs no body of its own
        if (
            h.new == SUCCESS
            and h.kind == protocol.TASK_SUCCEEDED
            and f"{rid}:{h.scope}:{h.attempt}" not in ran
        ):
            found.append(f"{rid}: {h.scope} attempt {h.attempt} succeeded without running")
        if (
            h.new == REVERTED
            and h.kind == protocol.TASK_REVERTED
            and f"{rid}:{h.scope}:{h.attempt}:revert" not in ran
        ):
            found.append(f"{rid}: {h.scope} reverted without its handler running")
    found += _paused_and_limits(rid, history, specs)
    found += _owed(rid, history, specs)
    found += _revert_order(rid, history, specs)
    return found


def _revert_order(rid: str, history: list[Any], specs: dict[str, Any]) -> list[str]:
    """Reverse dependency order: when a task begins reverting, none of its successors is
    reverting, nor begins reverting later in the same round (before it runs again: a retry
    scope reverts its tasks, then runs them again)."""
    moves: dict[str, list[tuple[int, str]]] = {}
    for i, h in enumerate(history):
        if h.scope != "run" and h.old != h.new:
            moves.setdefault(h.scope, []).append((i, h.new))
    found = []
    for name, spec in specs.items():
        for i, new in moves.get(name, []):
            if new != REVERTING:
                continue
            for succ in spec.succs:
                before = [m for j, m in moves.get(succ, []) if j < i]
                later = []
                for j, m in moves.get(succ, []):
                    if j > i:
                        if m in (PENDING, SCHEDULED):
                            break
                        later.append(m)
                if (before and before[-1] == REVERTING) or REVERTING in later:
                    found.append(f"{rid}: {name} began reverting before its successor {succ} was reverted")
    return sorted(set(found))


def _owed(rid: str, history: list[Any], specs: dict[str, Any]) -> list[str]:
    """In a run that ended REVERTED, every handler owed a call was called: each task (or map
    element: its node's handler) with a handler ends REVERTED if it succeeded, and if its body
    failed and the handler takes ``failure``."""
    last: dict[str, Any] = {}
    for h in history:
        if h.old != h.new:
            last[h.scope] = h
    if "run" not in last or last["run"].new != REVERTED:
        return []
    found = []
    for scope, h in last.items():
        spec = specs.get(scope.partition("[")[0]) if scope != "run" else None
        if spec is None or not spec.revert or (spec.map is not None and scope in specs):
            continue  # no handler; a map node is judged by its elements
        body_failed = h.new == FAILED and h.extra.get("error_type") != NOT_STARTED
        if h.new == SUCCESS or (body_failed and spec.revert_failure):
            found.append(f"{rid}: {scope} ended {h.new} in a REVERTED run: its handler was never called")
    return found


def _paused_and_limits(rid: str, history: list[Any], specs: dict[str, Any]) -> list[str]:
    """Nothing starts while the run is paused; a map never has more elements active than its
    limit."""
    found = []
    paused = False
    active: dict[str, set[str]] = {}  # map node -> its active elements
    limits = {n: s.map.get("limit", 0) for n, s in specs.items() if s.map}
    for h in history:
        if h.old == h.new:
            continue
        if h.scope == "run":
            paused = h.new == PAUSED
            continue
        if paused and h.old == PENDING and h.new == SCHEDULED:
            found.append(f"{rid}: {h.scope} was scheduled while the run was paused")
        node = h.scope.partition("[")[0]
        if node != h.scope and limits.get(node):
            now = active.setdefault(node, set())
            if h.new in TASK_ACTIVE:
                now.add(h.scope)
            else:
                now.discard(h.scope)
            if len(now) > limits[node]:
                found.append(
                    f"{rid}: map {node} had {len(now)} elements active, over its limit {limits[node]}"
                )
    return sorted(set(found))


def _attempts(rid: str, history: list[Any]) -> list[str]:
    """A result changes its task only at the attempt it reports (a stale attempt's result is
    fenced: a note at most) — or, having ended that attempt in the same commit, sends the
    next one (a request handed back unstarted, its run resumed or retried meanwhile) — and
    a task's attempt never goes back."""
    found = []
    last: dict[str, int] = {}
    for h in history:
        if h.scope == "run" or h.old == h.new:
            continue
        parts = h.event.split(":")
        own = len(parts) == 4 and parts[0] in ("result", "reverted") and parts[2] == h.scope
        # (the next attempt may be scheduled by the same commit: a retry without delay, or a
        # request skipped while its run was failed or paused, which was retried or resumed)
        again = own and h.new == SCHEDULED and str(h.attempt - 1) == parts[3]
        if own and parts[3] != str(h.attempt) and not again:
            found.append(f"{rid}: {h.scope} changed at attempt {h.attempt} by the result {h.event}")
        if h.attempt < last.get(h.scope, 0):
            found.append(f"{rid}: {h.scope} went back from attempt {last[h.scope]} to {h.attempt}")
        last[h.scope] = max(last.get(h.scope, 0), h.attempt)
    return found
