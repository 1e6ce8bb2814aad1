"""The checks of what comes from outside the engines and workers (tests/sim/outside.py), and of
what the world saw at once (`World.seen`). Each returns the violations it finds, as text.

- the outcome a run must have: CANCELLED once a cancel was applied to it; a gated run, whose
  operator retries it once, SUCCESS; otherwise the fault-free run's (`expected_differs`:
  a run a result with wrong value names reached may end otherwise);
- a cancel skips every task not yet running, nothing is scheduled or started after it, and
  no body starts once its run is cancelled (unless its worker could not read the run);
- a forged completion token is refused by the client, and a result naming values its task
  does not provide never makes the task succeed;
- dead letters only for poison (a poison task's request, a poison event) and the malformed
  messages injected; no state for a run that was never submitted;
- a lease timer never fails an attempt whose lease a heartbeat renewed past it before;
- no task of a finished run is left SCHEDULED or RUNNING;
- and the world's own: no timer handed out before it is due, no running task with a timeout
  without its timer, no heartbeat renewing another attempt's lease, no message over the
  payload limit.
"""

from __future__ import annotations

from typing import Any

from runner.broker.base import H_REASON
from runner.states import CANCELLED, FAILED, PENDING, RUN_TERMINAL, RUNNING, SCHEDULED, SKIPPED, SUCCESS


def cancelled(history: list[Any]) -> str | None:
    """The event id of the cancel applied to the run, if one was."""
    return next(
        (h.event for h in history if h.scope == "run" and h.new == CANCELLED and h.old != CANCELLED), None
    )


def innocent_poisoned(ev: dict[str, Any]) -> set[str]:
    """Runs a request of which was dead-lettered as poison though its task is no poison task.

    A known limitation, not counted as a violation: a worker holds up to ``concurrency``
    requests (task or revert requests); when a poison task kills it, the broker hands every one of them back with its
    delivery count raised, so a request held (or running) beside the poison one each time
    reaches the delivery limit with it and is dead-lettered too. Its run then fails.
    """
    out = set()
    for mid, headers, _ in ev["dead"]:
        parts = mid.split(":")
        if str(headers.get(H_REASON, "")).startswith("poison: task request") and len(parts) == 4:
            spec = ev["specs"].get(parts[1], {}).get(parts[2])
            if spec is None or spec.fn != "s_poison":
                out.add(parts[1])
    return out


def expected_differs(rid: str, ev: dict[str, Any], got: Any, base_ev: dict[str, Any]) -> str | None:
    """None when the run's outcome must equal the fault-free one; else "" if it is as it
    should be, or the violation."""
    history = ev["history"].get(rid, [])
    if cancelled(history) is not None:
        return "" if got is not None and got[0] == CANCELLED else f"{rid}: cancelled, but ended {got}"
    if rid in ev["outside"]["disturbed"] or rid in innocent_poisoned(ev) | innocent_poisoned(base_ev):
        return ""
    return None


def outside(ev: dict[str, Any], runs: dict[str, Any]) -> list[str]:
    found: list[str] = list(dict.fromkeys(ev["seen"]["violations"]))[:5]
    found += ev["outside"]["forged_accepted"]
    found += _gated(ev, runs)
    bad = set(ev["outside"]["bad_results"])
    for rid, history in ev["history"].items():
        found += _cancel(rid, history, ev)
        for h in history:
            if h.event in bad and h.new == SUCCESS and h.old != SUCCESS:
                found.append(f"{rid}: a result naming values {h.scope} does not provide made it succeed")
        found += _leases(rid, history, ev["seen"])
        status = runs.get(rid, (None,))[0]
        # a map node stays RUNNING in a run that ended otherwise (a retry resumes it); its
        # elements, which run bodies, must not
        active = [
            n
            for n in ev["active_tasks"].get(rid, [])
            if n not in ev["specs"][rid] or not ev["specs"][rid][n].map
        ]
        if status in RUN_TERMINAL and active:
            found.append(f"{rid}: ended {status} with tasks still active: {active[:5]}")
    found += _dead_letters(ev)
    for rid, parts in ev["ghosts"].items():
        found.append(f"state written for run {rid}, never submitted: {parts}")
    return found


def _gated(ev: dict[str, Any], runs: dict[str, Any]) -> list[str]:
    out = []
    for rid in ev["retry_once"]:
        got = runs.get(rid)
        if cancelled(ev["history"].get(rid, [])) or rid in ev["outside"]["disturbed"]:
            continue
        if rid in innocent_poisoned(ev):
            continue
        if got is None or got[0] != SUCCESS:
            out.append(f"{rid}: a gated run retried once by its operator ended {got}, not SUCCESS")
    return out


def _cancel(rid: str, history: list[Any], ev: dict[str, Any]) -> list[str]:
    cancel = cancelled(history)
    if cancel is None:
        return []
    found = []
    status = {n: PENDING for n in ev["specs"][rid]}
    i = 0
    while i < len(history) and history[i].event != cancel:
        h = history[i]
        if h.scope != "run":
            status[h.scope] = h.new
        i += 1
    skipped = {h.scope for h in history[i:] if h.event == cancel and h.new == SKIPPED}
    left = sorted(n for n, s in status.items() if s in (PENDING, SCHEDULED) and n not in skipped)
    if left:
        found.append(f"{rid}: the cancel left tasks to run: {left[:5]}")
    for h in history[i:]:
        if h.scope != "run" and h.old != h.new and h.new in (SCHEDULED, RUNNING):
            found.append(f"{rid}: {h.scope} went {h.new} after the run was cancelled")
    for (key, _), info in zip(ev["executions"], ev["exec_info"], strict=True):
        if key.startswith(rid + ":") and info is not None and info[1] == CANCELLED and not info[2]:
            found.append(f"{rid}: {key} ran after its run was cancelled")
    return found


def _leases(rid: str, history: list[Any], seen: dict[str, Any]) -> list[str]:
    found = []
    for h in history:
        if not (h.event.startswith("timer:lease:") and h.new == FAILED and h.old != FAILED):
            continue
        due = int(h.event.rsplit(":", 1)[1])
        at = seen["committed"].get(h.event)
        for seq, run, task, attempt, until in seen["beats"]:
            if (
                (run, task, attempt) == (rid, h.scope, h.attempt)
                and until > due
                and at is not None
                and seq < at
            ):
                found.append(
                    f"{rid}: the lease timer failed {h.scope} attempt {h.attempt}, renewed to {until}"
                )
                break
    return found


def _dead_letters(ev: dict[str, Any]) -> list[str]:
    found = []
    injected = set(ev["outside"]["injected"])
    for mid, headers, _ in ev["dead"]:
        reason = str(headers.get(H_REASON, ""))
        if mid in injected:
            continue
        parts = mid.split(":")
        if reason.startswith("poison: task request") and len(parts) == 4:  # req: or revreq:
            spec = ev["specs"].get(parts[1], {}).get(parts[2])
            if parts[0] == "req" and spec is not None and spec.fn == "s_poison":
                continue
            if parts[1] in innocent_poisoned(ev):
                continue  # the known limitation (see innocent_poisoned)
        found.append(f"dead letter {mid}: {reason[:100]}")
    return found[:3]
