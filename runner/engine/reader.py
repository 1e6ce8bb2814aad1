"""Reading what a decision needs: the first read of an event, then one more per `Need`.

`RunReader.decide` reads the run's meta fields and the event's task in one round trip,
decides, and on `Need` reads what was asked and decides again (after a few rounds, the whole
run at once). Task specs never change once a run exists, so they are cached, keyed by the
flow spec's digest (runs of one flow share them); with them cached, a task's success also
reads its successors' joins, states and inputs (`runner.decide.success_reads`) in that first
round trip. Holds no state but that cache: any number of engines share a run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Generic, NamedTuple, TypeVar

from runner import protocol
from runner.decide import META_FIELDS, Need, Rules, View, decide, success_reads
from runner.define.spec import END, TaskSpec
from runner.errors import StoreError
from runner.protocol import Event, unpack
from runner.store import Commit, Store, keys

K = TypeVar("K")
V = TypeVar("V")
_MAX_READS = 16  # rounds of `Need` per decision; after a full read none should be needed
_FULL_READ_AFTER = 8  # rounds of targeted reads before reading the whole run instead
_FIRST_META = (*META_FIELDS, "digest")  # the run's fields every event's first read takes


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entries."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class _Plan(NamedTuple):
    """What a task's success reads (`success_reads`), with the specs its decision uses."""

    joins: tuple[str, ...]
    sole: tuple[str, ...]  # the successors it alone precedes: their states
    data: tuple[str, ...]
    specs: Mapping[str, TaskSpec]  # the task's and its successors'


class RunReader:
    """Reads a run for each decision, through a cache of its immutable task specs."""

    def __init__(self, store: Store, rules: Rules) -> None:
        self.store = store
        self.rules = rules
        # Task specs keyed by (flow spec digest, task name); and which digest each recent
        # run has, so that its next success can plan its reads before reading anything.
        self._specs: _Lru[tuple[bytes, str], TaskSpec] = _Lru()
        self._spec_keys: _Lru[str, bytes] = _Lru()
        # What a task's success reads, by the same key as its spec: as immutable as the specs.
        self._plans: _Lru[tuple[bytes, str], _Plan] = _Lru()

    def created(self, run_id: str, spec_id: bytes) -> None:
        """A run was just created with this flow spec: its first result reads in one round trip."""
        self._spec_keys.put(run_id, spec_id)

    def _add_specs(self, run_id: str, spec_key: bytes, names: list[str], view: View) -> None:
        """Add these task specs to the view (from the cache when possible); ``spec_key``
        names the run's flow spec in the cache (its digest)."""
        missing = []
        for n in names:
            s = self._specs.get((spec_key, n))
            if s is None:
                missing.append(n)
            else:
                view.specs[n] = s
        if missing:
            raw = self.store.read(run_id, {keys.SPEC: missing})[keys.SPEC]
            for n, r in zip(missing, raw, strict=True):
                if r is None:
                    view.absent_specs.add(n)
                else:
                    s = TaskSpec.from_data(unpack(r))
                    self._specs.put((spec_key, n), s)
                    view.specs[n] = s

    def _cached_success_reads(self, spec_key: bytes, task: str) -> _Plan | None:
        """`success_reads` from cached specs alone, with those specs (computed once per flow
        spec and task); None if any of them is not cached."""
        plan = self._plans.get((spec_key, task))
        if plan is not None:
            return plan
        spec = self._specs.get((spec_key, task))
        if spec is None:
            return None
        specs = {task: spec}
        for s in spec.succs:
            if s != END:
                found = self._specs.get((spec_key, s))
                if found is None:
                    return None
                specs[s] = found
        fields, sole, data = success_reads(spec, specs)
        plan = _Plan(tuple(fields), tuple(sole), tuple(data), specs)
        self._plans.put((spec_key, task), plan)
        return plan

    def _fill(self, run_id: str, spec_key: bytes, view: View, need: Need) -> None:
        """Read what a decision asked for, in one round trip where possible."""
        if not need.parts:  # the whole run (rare events: control, compensation)
            view.tasks = dict(self.store.read_all(run_id, keys.TASKS))
            view.joins = dict(self.store.read_all(run_id, keys.JOINS))
            view.data = dict(self.store.read_all(run_id, keys.DATA))
            view.leases = dict(self.store.read_all(run_id, keys.LEASES))
            all_specs = self.store.read_all(run_id, keys.SPEC)
            view.specs = {n: TaskSpec.from_data(unpack(r)) for n, r in all_specs.items()}
            view.full = True
            return
        if keys.SPEC in need.parts:
            self._add_specs(run_id, spec_key, need.parts[keys.SPEC], view)
        wants = {p: ns for p, ns in need.parts.items() if p != keys.SPEC}
        if not wants:
            return
        got = self.store.read(run_id, wants)
        targets: dict[str, dict[str, bytes | None]] = {
            keys.TASKS: view.tasks,
            keys.JOINS: view.joins,
            keys.DATA: view.data,
            keys.LEASES: view.leases,
        }
        for part, names in wants.items():
            targets[part].update(zip(names, got[part], strict=True))

    def first_read(self, event: Event) -> tuple[dict[str, Sequence[str]], _Plan | None, bytes | None]:
        """What ``event``'s decision reads first, in one round trip: the run's meta fields
        and the event's task (for a result of a run seen before, with its specs cached, also
        what the decision will need); with the plan that chose it and the spec key guessed."""
        if event.kind == protocol.RUN_SUBMIT:
            return {keys.META: ["status"]}, None, None
        wants: dict[str, Sequence[str]] = {keys.META: _FIRST_META}
        if event.task:
            wants[keys.TASKS] = [event.task]
            wants[keys.LEASES] = [event.task]
        # A result of a run this engine has seen: with its specs cached, the reads that the
        # decision will need go in this same round trip (checked against the run's spec id).
        guess = self._spec_keys.get(event.run_id) if event.kind == protocol.TASK_SUCCEEDED else None
        plan = self._cached_success_reads(guess, event.task) if guess is not None else None
        if plan is not None:
            wants[keys.JOINS], wants[keys.DATA] = plan.joins, plan.data
            wants[keys.TASKS] = [event.task, *plan.sole]
        return wants, plan, guess

    def decide_many(self, events: Sequence[Event]) -> list[Commit | None | Exception]:
        """`decide` for events of distinct runs, their first reads in one round trip for
        all (`Store.read_many`); an event whose decision raised gets its exception."""
        firsts = [self.first_read(e) for e in events]
        got = self.store.read_many([(e.run_id, f[0]) for e, f in zip(events, firsts, strict=True)])
        out: list[Commit | None | Exception] = []
        for event, first, read in zip(events, firsts, got, strict=True):
            try:
                out.append(self.decide(event, first=(*first, read)))
            except Exception as e:  # noqa: BLE001 - the caller decides this event again, alone
                out.append(e)
        return out

    def decide(
        self,
        event: Event,
        redelivered: bool = False,
        first: tuple[dict[str, Sequence[str]], _Plan | None, bytes | None, dict[str, list[bytes | None]]]
        | None = None,
    ) -> Commit | None:
        """The commit for ``event``, reading what its decision needs; None if its run is not
        in the store (expired, never created, or lost: the engine tells which). ``first``:
        its `first_read`, already read."""
        now = protocol.now_ms()
        if first is None:
            wants, plan, guess = self.first_read(event)
            read = self.store.read(event.run_id, wants)
        else:
            wants, plan, guess, read = first
        if event.kind == protocol.RUN_SUBMIT:
            view = View(meta={"status": read[keys.META][0]}, applied_ms=now, redelivered=redelivered)
            return decide(event, view, self.rules)
        meta = dict(zip(wants[keys.META], read[keys.META], strict=True))
        digest = meta.pop("digest")
        view = View(meta=meta, applied_ms=now, redelivered=redelivered)
        if meta["status"] is None:
            if not (event.kind == protocol.RUN_CANCEL and digest is not None):
                return None
            view.full = True  # cancelled before its submit was applied: nothing to read yet
        # Specs never change once a run exists; runs of one flow share them (keyed by the
        # flow spec's digest), so a new run of a known flow reads none.
        spec_key = meta["spec_id"] or (event.run_id.encode() + b"\x1f" + (meta["created_ms"] or b""))
        self._spec_keys.put(event.run_id, spec_key)
        planned = plan if spec_key == guess else None  # the plan holds for this run's spec
        if event.task:
            view.tasks = {event.task: read[keys.TASKS][0]}
            view.leases = {event.task: read[keys.LEASES][0]}
            if planned is not None:
                view.specs.update(planned.specs)  # the task's and its successors'
            else:
                item = keys.item_of(event.task)  # an element of a map node: its node's spec
                self._add_specs(event.run_id, spec_key, [item[0] if item else event.task], view)
        if event.kind == protocol.TASK_SUCCEEDED and event.task in view.specs:
            # The usual reads of a result, in one or two round trips rather than one per
            # `Need`: the successors' specs (cached), their join counts, and — for
            # successors this task alone precedes (a chain), which it certainly makes ready —
            # their state and inputs too. A successor with several predecessors is read only
            # once ready.
            fields: Sequence[str]
            sole: Sequence[str]
            data: Sequence[str]
            if planned is not None:
                fields, sole, data = planned.joins, planned.sole, planned.data
                got = {
                    keys.JOINS: read[keys.JOINS],
                    keys.TASKS: read[keys.TASKS][1:],
                    keys.DATA: read[keys.DATA],
                }
            else:
                spec = view.specs[event.task]
                self._add_specs(event.run_id, spec_key, [s for s in spec.succs if s != END], view)
                fields, sole, data = success_reads(spec, view.specs)
                got = self.store.read(event.run_id, {keys.JOINS: fields, keys.TASKS: sole, keys.DATA: data})
            view.joins = dict(zip(fields, got[keys.JOINS], strict=True))
            view.tasks.update(zip(sole, got[keys.TASKS], strict=True))
            view.data.update(zip(data, got[keys.DATA], strict=True))
        for rounds in range(_MAX_READS):
            try:
                return decide(event, view, self.rules)
            except Need as asked:
                # After a few targeted reads (a long cascade, e.g. a chain of skips), read the
                # whole run once instead.
                self._fill(event.run_id, spec_key, view, asked if rounds < _FULL_READ_AFTER else Need())
        raise StoreError(f"event {event.id}: the decision kept asking for more of the run")
