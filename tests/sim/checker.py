"""What must hold after a simulated seed, as pure functions of its two outcomes (the run under
faults and the same workload without them). Each returns the violations it finds, as text.

- every run finished, and the queues, pools and timers drained (liveness);
- each run's final status and result equal those of the fault-free run;
- every event applied by exactly one commit (G1; `tests.helpers.checks.reapplied_events`);
- no task succeeded twice at one attempt, nor at two attempts (a stale result accepted);
- every attempt that succeeded ran its body (G2), and every reverted task with a handler ran it;
- compensation in reverse dependency order: a task starts reverting only after each of its
  successors that is reverted has finished reverting;
- without faults no body ran twice;
- no unsent outbox entry, no leftover timer, nothing undelivered, no dead letter (the sim has
  no poison and no malformed input).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from runner import protocol
from runner.states import REVERTED, REVERTING, SUCCESS
from tests.helpers.checks import reapplied_events
from tests.sim.simulate import Outcome


def violations(base: Outcome, out: Outcome) -> list[str]:
    found: list[str] = []
    if base.stuck:
        found.append(f"fault-free run: {base.stuck}")
    if out.stuck:
        found.append(out.stuck)
    for rid, want in base.runs.items():
        got = out.runs.get(rid)
        if got != want:
            found.append(f"{rid}: ended {got}, fault-free {want}")
    ev = out.evidence
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


def _history(
    rid: str, history: list[Any], specs: dict[str, Any], executions: list[tuple[str, str]]
) -> list[str]:
    found = []
    again = reapplied_events(history)
    if again:
        found.append(f"{rid}: events applied by more than one commit: {sorted(again)[:5]}")
    succeeded = Counter(
        h.scope for h in history if h.scope != "run" and h.new == SUCCESS and h.old != SUCCESS
    )
    twice = sorted(t for t, n in succeeded.items() if n > 1)
    if twice:
        found.append(f"{rid}: tasks that succeeded more than once: {twice[:5]}")
    ran = {k for k, _ in executions}
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
    # reverse dependency order: a successor's REVERTED comes before its predecessor's REVERTING
    first: dict[tuple[str, str], int] = {}
    for i, h in enumerate(history):
        if h.scope != "run" and h.old != h.new:
            first.setdefault((h.scope, h.new), i)
    for name, spec in specs.items():
        started = first.get((name, REVERTING))
        if started is None:
            continue
        for succ in spec.succs:
            began = first.get((succ, REVERTING))
            ended = first.get((succ, REVERTED))
            if began is not None and (ended is None or ended > started):
                found.append(f"{rid}: {name} began reverting before its successor {succ} was reverted")
    return found
