"""One task seen closely, for the dashboard's task pages and its timeline: each attempt
(from the run's history), what the task was given and what it provided (from the run's
data), and a map node's elements, a page at a time.

Read-only, from the store's contract through a `Client`; nothing here is on the engine's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner import states
from runner.client.info import HistoryEntry
from runner.decide.records import TaskState
from runner.define.spec import TaskSpec, item_input
from runner.protocol import unpack
from runner.store import keys

if TYPE_CHECKING:
    from runner.client.client import Client

_ENDS = frozenset({states.SUCCESS, states.FAILED, states.SKIPPED})


@dataclass
class Attempt:
    """One attempt of a task, from its history entries. A time is None when the history has
    no such step (an attempt that never started, or one still going)."""

    number: int
    scheduled_ms: int | None = None
    started_ms: int | None = None  # RUNNING (a worker took it)
    waiting_ms: int | None = None  # WAITING (a lazy task, a child run)
    ended_ms: int | None = None  # SUCCESS, FAILED or SKIPPED
    outcome: str = states.PENDING  # its latest state
    worker: str = ""
    error: str = ""  # "Type: message" of a failed attempt
    note: str = ""  # the engine's note on its end (a retry due, ...)
    revert_started_ms: int | None = None
    revert_ended_ms: int | None = None

    @property
    def duration_ms(self) -> int | None:
        start = self.started_ms or self.waiting_ms
        return None if start is None or self.ended_ms is None else max(0, self.ended_ms - start)


def _step(a: Attempt, h: HistoryEntry) -> None:
    new = h.new
    if new == states.SCHEDULED and a.scheduled_ms is None:
        a.scheduled_ms = h.at_ms
    elif new == states.RUNNING and a.started_ms is None:
        a.started_ms = h.at_ms
    elif new == states.WAITING:
        a.waiting_ms = h.at_ms
    elif new in _ENDS and h.old != states.REVERTING:
        a.ended_ms = h.at_ms
        if "error_type" in h.extra:
            message = str(h.extra.get("error", ""))
            a.error = f"{h.extra['error_type']}: {message}" if message else str(h.extra["error_type"])
        a.note = str(h.extra.get("note", ""))
    elif new == states.REVERTING:
        a.revert_started_ms = h.at_ms
    elif h.old == states.REVERTING:  # REVERTED, or FAILED: the handler failed
        a.revert_ended_ms = h.at_ms
    a.outcome = new
    if h.extra.get("worker"):
        a.worker = str(h.extra["worker"])


def attempts_of(history: Iterable[HistoryEntry]) -> dict[str, list[Attempt]]:
    """Every task's attempts (map elements included, under their own names), in order.
    Entries that change nothing (a fenced late result, a refused event) are not steps."""
    found: dict[str, dict[int, Attempt]] = {}
    for h in history:
        if h.scope == "run" or h.old == h.new or "retry" in h.extra:
            continue
        by_number = found.setdefault(h.scope, {})
        a = by_number.get(h.attempt)
        if a is None:
            a = by_number[h.attempt] = Attempt(h.attempt)
        _step(a, h)
    return {task: [by[n] for n in sorted(by)] for task, by in found.items()}


def element_of(task: str) -> tuple[str, int] | None:
    """(map node, index) for a map element's name (``node[3]``); None for any other task."""
    return keys.item_of(task)


def spec_of(specs: dict[str, TaskSpec], task: str) -> TaskSpec | None:
    """A task's spec, or a map element's (``node[i]``); None for a name the run does not have."""
    if task in specs:
        return specs[task]
    item = keys.item_of(task)
    if item is not None and item[0] in specs and specs[item[0]].map is not None:
        return specs[item[0]].item(task)
    return None


@dataclass(frozen=True)
class TaskData:
    """What a task was given (parameter -> value) and what it provided (name -> value);
    a name with no stored value is left out."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]


def task_data(client: Client, run_id: str, spec: TaskSpec, task: str) -> TaskData:
    params = {**spec.optional, **spec.args}  # parameter -> data name (a map node: the list)
    names = [*params.values(), *spec.provides]
    values = _data(client, run_id, names)
    inputs = {p: values[d] for p, d in params.items() if d in values}
    outputs = {n: values[n] for n in spec.provides if n in values}
    return TaskData(inputs, outputs)


def _data(client: Client, run_id: str, names: Sequence[str]) -> dict[str, Any]:
    if not names:
        return {}
    raw = client.store.read(run_id, {keys.DATA: list(names)})[keys.DATA]
    return {n: unpack(v) for n, v in zip(names, raw, strict=True) if v is not None}


@dataclass(frozen=True)
class Element:
    """One element of a map node: its item, state and result (if it succeeded)."""

    index: int
    name: str
    state: TaskState
    item: Any
    has_item: bool
    result: Any
    has_result: bool


def elements(
    client: Client, run_id: str, node: str, start: int, limit: int, status: str | None = None
) -> tuple[int, list[Element]]:
    """How many elements match (all of the node's, or those in ``status``) and the page of
    them from ``start``. Without a status filter only the page's elements are read."""
    raw_node = client.store.read(run_id, {keys.TASKS: [node]})[keys.TASKS][0]
    total = TaskState.decode(raw_node).items or 0
    if status is None:
        names = [keys.item_name(node, i) for i in range(start, min(total, start + limit))]
        raws = client.store.read(run_id, {keys.TASKS: names})[keys.TASKS] if names else []
        picked: list[tuple[str, bytes | None]] = list(zip(names, raws, strict=True))
        count = total
    else:
        found: list[tuple[int, str, bytes | None]] = []
        for name, raw in client.store.read_all(run_id, keys.TASKS).items():
            item = keys.item_of(name)
            if item is not None and item[0] == node and TaskState.decode(raw).status == status:
                found.append((item[1], name, raw))
        found.sort()
        count = len(found)
        picked = [(name, raw) for _, name, raw in found[start : start + limit]]
    values = _data(client, run_id, [n for name, _ in picked for n in (name, item_input(name))])
    out = []
    for name, raw_state in picked:
        st = TaskState.decode(raw_state)
        index = (keys.item_of(name) or (node, 0))[1]
        done = st.status == states.SUCCESS and name in values
        out.append(
            Element(
                index,
                name,
                st,
                values.get(item_input(name)),
                item_input(name) in values,
                values.get(name) if done else None,
                done,
            )
        )
    return count, out


def task_state(client: Client, run_id: str, task: str) -> TaskState:
    """A task's stored state (a map element's too); PENDING if never scheduled."""
    return TaskState.decode(client.store.read(run_id, {keys.TASKS: [task]})[keys.TASKS][0])
