"""Calling the decision core with no engine: a `View` from plain dicts, a readable `Commit`.

    view = run_view(SPEC, "RUNNING", tasks={"a": {"status": "RUNNING", "attempt": 1}})
    out = Outcome.of(decide(event("task.succeeded", "a", 1, values={"x": 1}), view, RULES))
    assert out.tasks == {"a": "SUCCESS", "b": "SCHEDULED"}

The view is ``full`` (every field given; what is not given is absent), so a decision never
asks for more; `Need` is exercised on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner import protocol
from runner.decide import Rules, View
from runner.decide.records import TaskState, history_entry
from runner.decide.view import NOT_TAKEN
from runner.define.spec import FlowSpec
from runner.protocol import Event, TaskRequest, pack, unpack
from runner.store import Commit, keys

RUN = "r1"
NOW = 1_000_000
RULES = Rules(retention_s=60, delivery_limit=5, lease_s=30.0)


def run_view(
    spec: FlowSpec,
    status: str | None = "RUNNING",
    tasks: Mapping[str, Mapping[str, Any]] | None = None,
    joins: Mapping[str, int] | None = None,
    data: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    full: bool = True,
) -> View:
    """A run of ``spec`` as the store would hold it: task states by field name, join counts
    (``"b"``: decided predecessors; ``"b-no"``: of which not taken), data values unpacked."""
    m: dict[str, bytes | None] = {
        "status": status.encode() if status else None,
        "created_ms": b"1",
        "sinks": str(len(spec.sinks)).encode(),
        "outputs": pack(spec.outputs),
        "reverts": str(spec.reverts).encode(),
        "spec_id": b"s",
    }
    for k, v in (meta or {}).items():
        m[k] = v if isinstance(v, bytes) or v is None else pack(v)
    return View(
        meta=m,
        tasks={n: TaskState(**st).encode() for n, st in (tasks or {}).items()},
        specs=dict(spec.tasks),
        joins={k.replace("-no", NOT_TAKEN): str(v).encode() for k, v in (joins or {}).items()},
        data={k: pack(v) for k, v in (data or {}).items()},
        full=full,
        applied_ms=NOW,
    )


def event(kind: str, task: str = "", attempt: int = 0, event_id: str = "", **body: Any) -> Event:
    if kind.startswith("task.") and kind != protocol.TASK_COMPLETE:  # a worker's report
        body.setdefault("worker", "w1")
    return Event(kind, event_id or f"{kind}:{RUN}:{task}:{attempt}", RUN, task, attempt, body, NOW)


def timer(purpose: str, task: str = "", attempt: int = 0, extra: str = "") -> Event:
    tid = protocol.timer_id(purpose, RUN, task, attempt, extra)
    return Event(protocol.TIMER_FIRED, tid, RUN, task, attempt, {"purpose": purpose}, NOW)


def error(kind: str = "ValueError", message: str = "boom") -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": "", "types": [kind]}


@dataclass(frozen=True)
class Outcome:
    """A `Commit` as a reader checks it."""

    commit: Commit
    run: str | None  # the run's new status, None if unchanged
    tasks: dict[str, str]  # task -> the status written
    states: dict[str, TaskState]
    sent: list[tuple[str, int, str]]  # (task, attempt, mode) of each request in the outbox
    timers: list[tuple[str, str, int]]  # (purpose, task, attempt) of each timer set
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, commit: Commit) -> Outcome:
        states = {n: TaskState.decode(raw) for n, raw in commit.writes.get(keys.TASKS, {}).items()}
        sent = []
        for raw in commit.outbox.values():
            _, body = unpack(raw)
            req = protocol.decode(body)
            assert isinstance(req, TaskRequest)
            sent.append((req.task, req.attempt, req.mode))
        timers = []
        for due, raw in commit.timers.values():
            ev = protocol.decode(raw)
            assert isinstance(ev, Event) and due >= NOW
            timers.append((ev.body["purpose"], ev.task, ev.attempt))
        status = commit.writes.get(keys.META, {}).get("status")
        return cls(
            commit=commit,
            run=status.decode() if status is not None else None,
            tasks={n: s.status for n, s in states.items()},
            states=states,
            sent=sorted(sent),
            timers=sorted(timers),
            history=[history_entry(raw, RUN) for raw in commit.history],
        )

    def moves(self) -> list[tuple[str, str, str]]:
        """(scope, from, to) of each history entry that changed something."""
        return [(h["scope"], h["from"], h["to"]) for h in self.history if h["from"] != h["to"]]

    def notes(self) -> str:
        return " | ".join(str(h.get("note", "")) for h in self.history)
