"""The checkers of the chaos and crash-point suites, as pure functions of what a run left
behind (its history, the executions its task bodies recorded, the faults struck), so that
each can be shown to fail on a made-up history (tests/unit/test_checks.py).

- `transitions`: the state changes of a history, counted (lost or extra ones).
- `reapplied_events`: event ids applied by more than one commit (G1: exactly once). Notes
  count: a re-applied event usually changes nothing and leaves only a note.
- `unexplained_duplicates`: executions of an attempt after its first that no fault explains
  (G2: a duplicate needs a fault on the process that held the attempt, or on an engine that
  had just scheduled it, or a broker or Redis restart between the two).
- `recovery_times`: per kill whose victim held work, how long until that work moved on (G4).
- `missed_faults`: planned faults that did not happen.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.client import HistoryEntry
from runner.states import REVERTING, SCHEDULED

Transition = tuple[str, str, str, int]

HOLD_MS = 15_000
"""How long before its first execution a worker may have held a delivery (prefetched)."""
RECOVERY_WINDOW_MS = 120_000
"""How long after a kill an engine's redelivered event is looked for (longer than any bound)."""
ENGINE_REDELIVERING = ("engine_kill", "freeze", "drop", "broker_restart", "broker_node_kill")
"""Faults after which an engine's unacknowledged events are redelivered."""
OUTAGES = ("redis_restart", "broker_restart", "broker_node_kill", "redis_master_kill", "slot_migration")
"""Faults of a service, from ``t_ms`` to ``done_ms`` (a RabbitMQ or Redis node down, a slot
moving): any process's delivery may be handed back and run again meanwhile."""


def transitions(history: Iterable[HistoryEntry]) -> Counter[Transition]:
    """The state changes of a history (notes, where old == new, left out), counted."""
    return Counter((h.scope, h.old, h.new, h.attempt) for h in history if h.old != h.new)


def compare_transitions(ref: Counter[Transition], got: Counter[Transition]) -> tuple[int, int, int]:
    """(lost, duplicated, unexpected) transitions of a run against its local-mode reference:
    lost are made fewer times than in the reference; duplicated, more often (most are made
    once; a retry scope's inner scope starts over at attempt 1 when its outer scope runs
    again, so the reference holds those twice); unexpected, never made by the reference."""
    lost = sum((ref - got).values())
    dup = sum(n - max(ref[t], 1) for t, n in got.items() if n > max(ref[t], 1))
    return lost, dup, sum(1 for t in got if t not in ref)


def commits(history: Iterable[HistoryEntry]) -> list[tuple[str, list[HistoryEntry]]]:
    """The history cut into commits, each as (event id, its entries). One commit appends its
    entries together (one Lua script) with one applied time ``t`` and one redelivered flag,
    so a new commit starts wherever the event, ``t`` or the flag changes."""
    out: list[tuple[tuple[str, Any, bool], list[HistoryEntry]]] = []
    for h in history:
        key = (h.event, h.extra.get("t"), bool(h.extra.get("redelivered")))
        if out and out[-1][0] == key:
            out[-1][1].append(h)
        else:
            out.append((key, [h]))
    return [(key[0], entries) for key, entries in out]


def reapplied_events(history: Iterable[HistoryEntry]) -> dict[str, int]:
    """Event id -> number of commits, for every event applied by more than one commit."""
    counts = Counter(event for event, _ in commits(history))
    return {event: n for event, n in counts.items() if n > 1}


@dataclass(frozen=True)
class Execution:
    """One execution of a task body (or its revert handler), as the chaos flows record it."""

    key: str  # "<run>:<task>:<attempt>", with ":revert" for a revert handler
    pid: int
    ms: int


def parse_executions(raw: Iterable[bytes | str]) -> dict[str, list[Execution]]:
    """``key|pid|ms`` records -> executions by key, oldest first."""
    out: dict[str, list[Execution]] = defaultdict(list)
    for entry in raw:
        text = entry.decode() if isinstance(entry, bytes) else entry
        key, pid, ms = text.rsplit("|", 2)
        out[key].append(Execution(key, int(pid), int(ms)))
    for execs in out.values():
        execs.sort(key=lambda e: e.ms)
    return dict(out)


def scheduled_times(run_id: str, history: Iterable[HistoryEntry]) -> dict[str, int]:
    """Execution key -> when the engine applied the commit that sent its request: the task
    becoming SCHEDULED at that attempt, or REVERTING (the revert handler's request)."""
    out: dict[str, int] = {}
    for h in history:
        if h.scope == "run" or h.old == h.new or "t" not in h.extra:
            continue
        key = f"{run_id}:{h.scope}:{h.attempt}"
        if h.new == SCHEDULED:
            out.setdefault(key, int(h.extra["t"]))
        elif h.new == REVERTING:
            out.setdefault(f"{key}:revert", int(h.extra["t"]))
    return out


def explains(fault: Mapping[str, Any], before: Sequence[Execution], later: Execution, sched: int) -> bool:
    """Whether ``fault`` can have caused ``later``, a repeat of the executions ``before``:
    - a kill, freeze or drop of a worker that ran one of them (it held the delivery, which
      was redelivered) or that ran ``later`` (it held the delivery through the fault, then
      ran it after another worker had);
    - a kill, freeze or drop of an engine after it sent the request (at ``sched``) and before
      ``later``: the event that sent it is redelivered and its unconfirmed request sent again;
    - a broker or Redis restart, or another outage of a service (`OUTAGES`), overlapping the
      time from the first execution to ``later``.
    """
    t = int(fault["t_ms"])
    if t > later.ms:
        return False
    kind = fault["kind"]
    if kind in OUTAGES:
        return int(fault.get("done_ms", t)) >= before[0].ms
    if fault.get("role") == "worker":
        pids = {e.pid for e in before} | {later.pid}
        return fault.get("pid") in pids and t >= before[0].ms - HOLD_MS
    if fault.get("role") == "engine":
        return t >= sched
    return False


def unexplained_duplicates(
    execs: Mapping[str, Sequence[Execution]],
    faults: Sequence[Mapping[str, Any]],
    scheduled: Mapping[str, int],
) -> list[Execution]:
    """Every execution after the first of its key that no fault explains (see `explains`).
    Without a known send time the engine faults explain nothing."""
    out = []
    for key, runs in execs.items():
        sched = scheduled.get(key, 1 << 62)
        for i, later in enumerate(runs[1:], start=1):
            if not any(explains(f, runs[:i], later, sched) for f in faults):
                out.append(later)
    return out


def duplicate_executions(execs: Mapping[str, Sequence[Execution]]) -> int:
    return sum(len(runs) - 1 for runs in execs.values())


def recovery_times(
    faults: Sequence[Mapping[str, Any]], histories: Mapping[str, Sequence[HistoryEntry]]
) -> dict[str, list[float]]:
    """Per role, per kill whose victim held work: ms from the kill to the first applied
    transition of that work after it; the slowest of the kill's work counts.

    - A worker held the tasks whose last transition before the kill was RUNNING on it.
    - An engine held the events created before the kill and applied after it as
      redeliveries; those applied after another fault that redelivers an engine's events
      are left out (that fault may be the cause).
    Kills that held nothing are left out: they measure nothing."""
    out: dict[str, list[float]] = {"engine": [], "worker": []}
    applied = [h for hist in histories.values() for h in hist if "t" in h.extra]
    for f in faults:
        if not f["kind"].endswith("_kill"):
            continue
        t, gaps = int(f["t_ms"]), []
        if f["kind"] == "engine_kill":
            others = [
                int(g["t_ms"])
                for g in faults
                if g is not f and g["kind"] in ENGINE_REDELIVERING and g["t_ms"] > t
            ]
            for h in applied:
                done = int(h.extra["t"])
                if (
                    h.extra.get("redelivered")
                    and h.at_ms < t < done < t + RECOVERY_WINDOW_MS
                    and not any(t < g < done for g in others)
                ):
                    gaps.append(done - t)
        else:
            for hist in histories.values():
                by_task: dict[str, list[HistoryEntry]] = defaultdict(list)
                for h in hist:
                    if "t" in h.extra and h.scope != "run":
                        by_task[h.scope].append(h)
                for entries in by_task.values():
                    before = [h for h in entries if h.extra["t"] <= t]
                    after = [h for h in entries if h.extra["t"] > t]
                    if (
                        before
                        and after
                        and before[-1].new == "RUNNING"
                        and str(before[-1].extra.get("worker", "")).endswith(f":{f['pid']}")
                    ):
                        gaps.append(int(after[0].extra["t"]) - t)
        if gaps:
            out[f["kind"].split("_")[0]].append(float(max(gaps)))
    return out


def missed_faults(
    plan: Mapping[str, int], faults: Sequence[Mapping[str, Any]], broker_restart_skipped: str | None
) -> list[str]:
    """The planned faults that did not happen, each said in a line (empty: all happened)."""
    out = []
    done = Counter(f["kind"] for f in faults)
    for kind, planned in (
        ("engine_kill", plan["engine_kills"]),
        ("worker_kill", plan["worker_kills"]),
        ("freeze", plan["freezes"]),
        ("drop", plan["drops"]),
        ("redis_restart", plan["redis_restarts"]),
        ("broker_restart", plan["broker_restarts"]),
    ):
        if done[kind] != planned:
            why = (
                f" ({broker_restart_skipped})" if kind == "broker_restart" and broker_restart_skipped else ""
            )
            out.append(f"{kind}: {done[kind]} of {planned} planned{why}")
    for f in faults:
        if f["kind"].endswith("_kill") and f.get("exit") != -9:
            out.append(f"{f['kind']} of pid {f.get('pid')}: exit {f.get('exit')}, not SIGKILL")
        if f["kind"] == "drop" and not f.get("closed"):
            out.append(f"drop of pid {f.get('pid')}: no connection closed")
        if f["kind"] == "freeze" and not f.get("resumed", True):
            out.append(f"freeze of pid {f.get('pid')}: never resumed")
    return out


def pct(values: Sequence[float], q: float) -> float:
    """The value at quantile ``q`` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
