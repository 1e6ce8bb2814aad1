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
- no unsent outbox entry, no leftover timer, nothing undelivered, no dead letter (the sim has
  no poison and no malformed input).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from runner import protocol
from runner.decide.records import NOT_STARTED
from runner.states import FAILED, PAUSED, PENDING, REVERTED, REVERTING, SCHEDULED, SUCCESS, TASK_ACTIVE
from tests.helpers.checks import reapplied_events
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
        history = ev["history"].get(rid, [])
        if (
            got != want
            and not _lease_lost_while_failing(want, got, history)
            and not _skipped_while_failing(want, got, history + base.evidence["history"].get(rid, []))
        ):
            found.append(f"{rid}: ended {got}, fault-free {want}")
    for rid, history in ev["history"].items():
        found += _history(rid, history, ev["specs"][rid], ev["executions"])
    for rid, outbox in ev["outbox"].items():
        if outbox:
            found.append(f"{rid}: unsent outbox entries {sorted(outbox)}")
    if ev["timers"]:
        found.append(f"leftover timers {ev['timers'][:5]}")
    if ev["undelivered"]:
        found.append(f"{ev['undelivered']} messages undelivered or unacknowledged")
    if ev["dead"]:
        found.append(f"dead letters: {[h.get('x-ackflow-reason') for h in ev['dead']][:3]}")
    if not out.faults:
        counts = Counter(k for k, _ in ev["executions"])
        twice = sorted(k for k, n in counts.items() if n > 1)
        if twice:
            found.append(f"executed twice without any fault: {twice[:5]}")
    return found


def _lease_lost_while_failing(want: Any, got: Any, history: list[Any]) -> bool:
    """A failing run whose active task lost its lease (its worker looked dead) fails that
    attempt without retrying it: with nothing completed left to revert it ends FAILED, where
    without the fault the task completed and was reverted (REVERTED). Both are failures."""
    failing = (FAILED, REVERTED)
    if got is None or want[0] not in failing or got[0] not in failing or want[1] != got[1]:
        return False
    return any(h.event.startswith("timer:lease:") and h.new == FAILED for h in history)


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
    ended: set[tuple[str, str]] = set()  # (event, scope): the event ended the attempt it reports
    for h in history:
        if h.scope == "run" or h.old == h.new:
            continue
        parts = h.event.split(":")
        own = len(parts) == 4 and parts[0] in ("result", "reverted") and parts[2] == h.scope
        if own and parts[3] == str(h.attempt):
            ended.add((h.event, h.scope))
        elif own and not (
            (h.event, h.scope) in ended and h.new == "SCHEDULED" and h.attempt == int(parts[3]) + 1
        ):
            found.append(f"{rid}: {h.scope} changed at attempt {h.attempt} by the result {h.event}")
        if h.attempt < last.get(h.scope, 0):
            found.append(f"{rid}: {h.scope} went back from attempt {last[h.scope]} to {h.attempt}")
        last[h.scope] = max(last.get(h.scope, 0), h.attempt)
    return found
