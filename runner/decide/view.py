"""What a decision reads: the `View` of one run, the `Need` for more of it, the `Rules`.

The engine reads a few fields of the run into a `View` and calls `decide`. A decision that
needs a field the view lacks raises `Need`; the engine reads it and decides again. So the
common events read O(degree of the task) and only rare ones (cancel, retry of a run,
compensation) read the whole run. `success_reads` names the usual reads of a task's success,
once, for both sides: the engine's first read (runner.engine.reader) and `advance`'s
prefetch, which must agree or the first read is wasted.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.config import Config
from runner.define.spec import END, TaskSpec
from runner.store import keys

META_FIELDS = (
    "status",
    "created_ms",
    "sinks",
    "outputs",
    "held",
    "reverts",
    "plan",
    "error",
    "deadline_s",
    "deadline_timer",
    "spec_id",
    "parent",
    "flow",  # the flow's name: the metrics label run durations with it
    "scopes",
    "scope_state",
)
NOT_TAKEN = "\x1eno"  # joins field suffix: how many incoming edges were not taken


class Need(Exception):
    """The decision needs fields the view lacks: part -> names; no parts means the whole run."""

    def __init__(self, parts: Mapping[str, Iterable[str]] | None = None) -> None:
        self.parts = {p: sorted(set(ns)) for p, ns in (parts or {}).items() if ns}
        super().__init__(f"need {self.parts or 'the whole run'}")


@dataclass(frozen=True)
class Rules:
    """The settings decisions depend on."""

    retention_s: int = 7 * 24 * 3600
    delivery_limit: int = 5
    lease_s: float = 30.0

    @classmethod
    def of(cls, config: Config) -> Rules:
        return cls(config.retention_s, config.delivery_limit, config.lease_s)


@dataclass
class View:
    """The fields of one run a decision depends on, as read from the store.

    A name present in a dict was read (its value None when absent from the store); with
    ``full`` every field of the run was read, so a missing name is simply absent.
    """

    meta: dict[str, bytes | None] = field(default_factory=dict)
    tasks: dict[str, bytes | None] = field(default_factory=dict)  # raw state, None = PENDING
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    joins: dict[str, bytes | None] = field(default_factory=dict)  # raw count, None = 0
    data: dict[str, bytes | None] = field(default_factory=dict)  # packed values
    leases: dict[str, bytes | None] = field(default_factory=dict)  # "<attempt>:<until ms>"
    absent_specs: set[str] = field(default_factory=set)  # read, and not in the run's spec
    full: bool = False
    applied_ms: int = 0  # when the engine applies the event (history "t", timer due times)
    redelivered: bool = False  # the broker redelivered the event (an engine or link died)

    def _get(self, part: str, values: Mapping[str, Any], names: Iterable[str]) -> None:
        missing = [n for n in names if n not in values]
        if missing and not self.full:
            raise Need({part: missing})

    def prefetch(self, parts: Mapping[str, Iterable[str]]) -> None:
        """Ask for all of these at once (one round trip) rather than one `Need` per field."""
        if self.full:
            return
        missing = {}
        for part, names in parts.items():
            if part == keys.SPEC:
                known, gone = self.specs, self.absent_specs
                lack = [n for n in names if n not in known and n not in gone]
            else:
                known = getattr(self, _PARTS[part]) if part in _PARTS else {}
                lack = [n for n in names if n not in known]
            if lack:
                missing[part] = lack
        if missing:
            raise Need(missing)

    def task_raw(self, name: str) -> bytes | None:
        if name not in self.tasks:
            self._get(keys.TASKS, self.tasks, [name])
        return self.tasks.get(name)

    def has_spec(self, name: str) -> bool:
        item = keys.item_of(name)
        if item is not None:  # an element of a map node
            return self.has_spec(item[0]) and self.specs[item[0]].map is not None
        if name in self.specs:
            return True
        if name in self.absent_specs or self.full:
            return False
        raise Need({keys.SPEC: [name]})

    def spec(self, name: str) -> TaskSpec:
        found = self.specs.get(name)
        if found is not None:  # the usual case (a map element's name is never a key here)
            return found
        item = keys.item_of(name)
        if item is not None:
            return self.spec(item[0]).item(name)
        self._get(keys.SPEC, self.specs, [name])
        return self.specs[name]

    def join(self, name: str) -> int:
        if name not in self.joins:
            self._get(keys.JOINS, self.joins, [name])
        return int(self.joins.get(name) or 0)

    def values(self, names: Iterable[str]) -> dict[str, bytes | None]:
        names = list(names)
        self._get(keys.DATA, self.data, names)
        return {n: self.data.get(n) for n in names}

    def lease(self, name: str) -> bytes | None:
        if name not in self.leases:
            self._get(keys.LEASES, self.leases, [name])
        return self.leases.get(name)


_PARTS = {keys.TASKS: "tasks", keys.JOINS: "joins", keys.DATA: "data", keys.LEASES: "leases"}


def join_fields(succs: Iterable[str]) -> list[str]:
    """The joins fields a task's completion reads for its successors."""
    return [f for s in succs for f in (s, s + NOT_TAKEN)]


def start_reads(starts: Mapping[str, TaskSpec], known: Container[str]) -> tuple[list[str], list[str]]:
    """What starting these successors reads: their states, and their inputs not ``known``
    already (the values the deciding event itself provides)."""
    data = {v for s in starts.values() for v in (*s.args.values(), *s.optional.values()) if v not in known}
    return list(starts), sorted(data)


def success_reads(spec: TaskSpec, specs: Mapping[str, TaskSpec]) -> tuple[list[str], list[str], list[str]]:
    """What deciding a success of ``spec`` reads, given its successors' ``specs``: their join
    fields, the successors it alone precedes (their state: it certainly makes them ready, a
    chain), and those successors' inputs it does not provide itself.

    The engine reads these with the event's first read (runner.engine.reader); `advance`
    asks for the same through `join_fields` and `start_reads`, so the two cannot drift."""
    sole = {s: specs[s] for s in spec.succs if s in specs and len(specs[s].preds) == 1 and s not in spec.when}
    tasks, data = start_reads(sole, set(spec.provides))
    return join_fields(spec.succs), tasks, data


def successors(spec: TaskSpec) -> list[str]:
    """A task's successors that are tasks (not the END marker)."""
    return [s for s in spec.succs if s != END]
