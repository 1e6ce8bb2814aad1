"""What the chaos suite and `make cluster` check once a workload of chaos flows has finished:
outcomes and transitions against local-mode references, executions, queues, outbox and dead
letters (G1-G3), as one report dict. The faults are the caller's (see `checks.explains`).

- `retry`: call through a broker or Redis outage (the client side of a fault).
- `references`: the transitions of each flow of a mix, run once in local mode.
- `audit`: the report of a finished workload.
- `diagnose`: what an operator would look at when runs do not finish.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from runner.broker.kombu import KombuBroker
from runner.client import Client
from runner.errors import AckflowError
from runner.local import LocalRuntime
from tests.helpers import checks
from tests.helpers.checks import Transition, transitions

T = TypeVar("T")
Mix = Mapping[str, tuple[Any, Callable[[int], dict[str, Any]], str, Callable[[int], Any]]]
"""name -> (flow, inputs for run i, expected status, expected result for run i)"""


def retry(fn: Callable[[], T], what: str, timeout_s: float = 120) -> T:
    """Call through a broker or Redis restart (the client side of chaos)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except AckflowError as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {timeout_s} s: {e}") from e
            time.sleep(0.2)


def references(mix: Mix) -> dict[str, Counter[Transition]]:
    refs = {}
    with LocalRuntime() as rt:
        for kind, (flow, inputs, _, _) in mix.items():
            info = rt.run(flow, inputs(1), timeout_s=60)
            refs[kind] = transitions(rt.client.history(info.run_id))
    return refs


def audit(
    client: Client,
    mix: Mix,
    refs: Mapping[str, Counter[Transition]],
    runs: Mapping[str, tuple[str, int]],
    infos: Mapping[str, Any],
    executions: Iterable[bytes | str],
    faults: Sequence[Mapping[str, Any]],
    queues: Sequence[str] = ("engine", "task.default"),
) -> dict[str, Any]:
    """The report of finished ``runs`` (run id -> (kind of ``mix``, i)) whose final states are
    ``infos``; ``executions`` are the records the chaos flows' task bodies wrote (those of
    other runs are left out)."""
    histories = {rid: retry(lambda r=rid: client.history(r), "history") for rid in runs}  # type: ignore[misc]
    lost = dup = unexpected = 0
    wrong = []
    reapplied: list[tuple[str, str, int]] = []
    redeliveries = 0
    scheduled: dict[str, int] = {}
    for rid, (kind, i) in runs.items():
        _, _, status, result = mix[kind]
        info = infos[rid]
        if info.status != status or info.result != result(i):
            wrong.append((rid, info.status, info.result))
        got = transitions(histories[rid])
        missing, extra, new = checks.compare_transitions(refs[kind], got)
        lost, dup, unexpected = lost + missing, dup + extra, unexpected + new
        reapplied += [(rid, e, n) for e, n in checks.reapplied_events(histories[rid]).items()]
        redeliveries += sum(
            1 for h in histories[rid] if "redelivery" in h.extra or h.extra.get("redelivered")
        )
        scheduled.update(checks.scheduled_times(rid, histories[rid]))
    # G2: executions, by idempotency key (":revert" for revert handlers)
    execs = {
        key: e
        for key, e in checks.parse_executions(executions).items()
        if key.rsplit(":", 3 if key.endswith(":revert") else 2)[0] in runs
    }
    never = never_reverted = 0
    for rid in runs:
        for name, t in infos[rid].tasks.items():
            if t.status in ("SUCCESS", "FAILED", "REVERTED") and not execs.get(f"{rid}:{name}:{t.attempt}"):
                never += 1
            if t.status == "REVERTED" and not execs.get(f"{rid}:{name}:{t.attempt}:revert"):
                never_reverted += 1
    unexplained = checks.unexplained_duplicates(execs, faults, scheduled)
    # G3: queues drained, outbox empty, no dead letters
    broker = KombuBroker(client.config)
    queues_left: dict[str, int] = {}
    for q in queues:
        deadline = time.monotonic() + 60  # late duplicates (stale started events) drain quickly
        while (depth := retry(lambda q=q: broker.depth(q), "depth")) and time.monotonic() < deadline:  # type: ignore[misc]
            broker.keepalive(0.2)
        if depth:
            queues_left[q] = depth
    dead = retry(lambda: broker.depth("dead"), "dead depth")
    broker.close()
    unsent = sum(len(client.store.read_all(rid, "outbox")) for rid in runs)
    return {
        "runs": len(runs),
        "runs_by_kind": dict(Counter(k for k, _ in runs.values())),
        "histories": histories,
        "redeliveries_seen": redeliveries,
        "executions": sum(len(t) for t in execs.values()),
        "duplicate_executions": checks.duplicate_executions(execs),
        "unexplained_duplicate_executions": len(unexplained),
        "unexplained_examples": [(e.key, e.pid, e.ms) for e in unexplained[:5]],
        "tasks_never_executed": never,
        "reverts_never_executed": never_reverted,
        "lost_transitions": lost,
        "duplicate_transitions": dup,
        "duplicate_applications": sum(n - 1 for _, _, n in reapplied),
        "reapplied_events": reapplied,
        "unexpected_transitions": unexpected,
        "wrong_outcomes": wrong,
        "queues_left": queues_left,
        "dead_letters": dead,
        "unsent_outbox_entries": unsent,
    }


def diagnose(client: Client, ids: Iterable[str], logs: str) -> str:
    """What an operator would look at: unfinished runs, their last transitions, the queues."""
    lines = []
    for rid in ids:
        info = client.status(rid)
        if info.done:
            continue
        tasks = {n: (t.status, t.attempt) for n, t in info.tasks.items() if t.status != "SUCCESS"}
        lines.append(f"{rid} {info.status} unfinished tasks {tasks}")
        lines += [f"    {h.describe()} {h.extra}" for h in client.history(rid)[-6:]]
        lines.append(f"    outbox {list(client.store.read_all(rid, 'outbox'))}")
    broker = KombuBroker(client.config)
    try:
        lines.append(
            "queues: " + ", ".join(f"{q}={broker.depth(q)}" for q in ("engine", "task.default", "dead"))
        )
        lines += [f"dead: {d.id} from {d.queue} x{d.delivery_count}: {d.reason}" for d in broker.list_dead(8)]
    finally:
        broker.close()
    lines.append(logs[-6000:])
    return "\n".join(lines)
