"""The draft of one decision: reads through what it already changed, and the writes,
guards, history, outbox and timers that `Draft.commit` turns into one `runner.store.Commit`.

Primitives only; what the writes mean is in `progress`, `revert`, `events` and `control`,
as functions of the draft (``d``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner import protocol, states
from runner.broker.base import ENGINE_QUEUE, task_queue
from runner.decide.records import RUN_MARK, TaskState, history_record
from runner.decide.view import Rules, View
from runner.protocol import Event, TaskRequest, pack, unpack
from runner.store import keys
from runner.store.base import Commit, Guard

WAIT_TIMER = "wait"  # timer id suffix of a lazy task's waiting timeout


def status_of(view: View) -> str | None:
    raw = view.meta.get("status")
    return None if raw is None else raw.decode()


def outbox_entry(routing_key: str, msg: protocol.Message) -> bytes:
    return pack([routing_key, protocol.encode(msg)])


class Draft:
    """Collects what one event changes; `commit` turns it into a `Commit`."""

    def __init__(self, event: Event, view: View, rules: Rules) -> None:
        self.event, self.view, self.rules = event, view, rules
        self.run_id = event.run_id
        self.now = view.applied_ms or protocol.now_ms()
        self.at = event.at_ms or self.now
        self.run_status = status_of(view)
        self.guards: list[Guard] = []
        self._guarded: set[tuple[str, str]] = set()
        self.writes: dict[str, dict[str, bytes]] = {}
        self.deletes: dict[str, list[str]] = {}
        self.history: list[bytes] = []
        self.outbox: dict[str, bytes] = {}
        self.timers: dict[str, tuple[int, bytes]] = {}
        self.cancel: list[str] = []
        self.status_change: tuple[str, str] | None = None
        self.flow = ""  # set when the event creates the run: indexes it by flow
        self._states: dict[str, TaskState] = {}
        self.new_data: dict[str, bytes] = {}
        # every history entry's event (its id, the run id left out) and lag
        self._event_ref = event.id.replace(self.run_id, RUN_MARK, 1)
        self._lag = view.applied_ms - self.at if view.applied_ms else None

    # --- reading, through what this draft already changed ---------------------------------

    def state(self, name: str) -> TaskState:
        if name not in self._states:
            self._states[name] = TaskState.decode(self.view.task_raw(name))
        return self._states[name]

    def data(self, names: Iterable[str]) -> dict[str, bytes | None]:
        names = list(names)
        out = self.view.values([n for n in names if n not in self.new_data])
        out.update({n: self.new_data[n] for n in names if n in self.new_data})
        out.update({n: None for n in self.deletes.get(keys.DATA, ()) if n in out})
        return out

    def join(self, name: str) -> int:
        """A join count, as this draft left it (a skip can reach one join twice)."""
        written = self.writes.get(keys.JOINS, {}).get(name)
        return int(written) if written is not None else self.view.join(name)

    def meta_list(self, name: str) -> list[Any]:
        if name in self.deletes.get(keys.META, ()):
            return []  # emptied by this draft (`set_meta_list`)
        raw = self.writes.get(keys.META, {}).get(name, self.view.meta.get(name))
        return list(unpack(raw)) if raw else []

    # --- writing -----------------------------------------------------------------------

    def guard(self, part: str, name: str, expected: bytes | None) -> None:
        if (part, name) not in self._guarded:
            self._guarded.add((part, name))
            self.guards.append((part, name, expected))

    def write(self, part: str, name: str, value: bytes) -> None:
        self.writes.setdefault(part, {})[name] = value
        if name in self.deletes.get(part, ()):
            self.deletes[part].remove(name)  # written again after a delete: the write wins

    def set_task(self, name: str, new: TaskState) -> None:
        self.guard(keys.TASKS, name, self.view.task_raw(name))
        self._states[name] = new
        self.write(keys.TASKS, name, new.encode())

    def guard_tasks_read(self) -> None:
        """Fence the commit by every task state the decision read (a decision over the whole
        run: compensation, cancel, retry, failing the run). Otherwise two such decisions on
        two engines, each writing only its own tasks, could each act on the other's old state."""
        for n in list(self.view.tasks):
            self.guard(keys.TASKS, n, self.view.task_raw(n))

    def set_meta_list(self, name: str, items: list[Any]) -> None:
        self.guard(keys.META, name, self.view.meta.get(name))
        if items:
            self.write(keys.META, name, pack(items))
        else:
            self.writes.get(keys.META, {}).pop(name, None)
            self.deletes.setdefault(keys.META, []).append(name)

    def set_data(self, values: Mapping[str, bytes]) -> None:
        self.new_data.update(values)
        self.writes.setdefault(keys.DATA, {}).update(values)

    def clear_data(self, names: Iterable[str]) -> None:
        """Delete these values from the run's data (a reverted task's results)."""
        gone = self.deletes.setdefault(keys.DATA, [])
        for n in names:
            self.new_data.pop(n, None)
            self.writes.get(keys.DATA, {}).pop(n, None)
            if n not in gone:
                gone.append(n)

    def hist(self, scope: str, old: str, new: str, attempt: int = 0, **extra: Any) -> None:
        """One history entry (see `history_entry`): when the event was made, how much later it
        was applied, the event (its id with the run id left out), what changed, and extras."""
        if self.view.redelivered:
            extra["redelivered"] = True
        self.history.append(
            history_record(
                self.at, self._lag, self._event_ref, self.event.kind, scope, old, new, attempt, extra
            )
        )

    def note(self, scope: str, attempt: int, note: str) -> None:
        st = (self.run_status or states.PENDING) if scope == "run" else self.state(scope).status
        self.hist(scope, st, st, attempt, note=note)

    def timer(self, purpose: str, due_ms: int, task: str = "", attempt: int = 0, extra: str = "") -> str:
        tid = protocol.timer_id(purpose, self.run_id, task, attempt, extra)
        event = Event(protocol.TIMER_FIRED, tid, self.run_id, task, attempt, {"purpose": purpose}, due_ms)
        self.timers[tid] = (due_ms, protocol.encode(event))
        return tid

    def set_run(self, new: str, **extra: Any) -> None:
        old = self.run_status or states.PENDING
        states.check_run(old, new)
        self.guard(keys.META, "status", self.view.meta.get("status"))
        self.write(keys.META, "status", new.encode())
        if new in states.RUN_TERMINAL:
            self.write(keys.META, "finished_ms", str(self.at).encode())
        first = self.status_change[0] if self.status_change else (self.run_status or "")
        self.status_change = (first, new)
        self.run_status = new
        self.hist("run", old, new, **extra)

    def commit(self) -> Commit:
        if self.writes or self.history:
            self.write(keys.META, "updated_ms", str(self.at).encode())
            # Every decision depends on the run's status (a task is sent or held, a success
            # advances the run or takes a compensation step): it is fenced by the status it
            # read, so a pause, cancel or failure another engine commits meanwhile makes this
            # commit conflict, and the event is decided again on the new status.
            self.guard(keys.META, "status", self.view.meta.get("status"))
        done = self.run_status in states.RUN_TERMINAL
        sc = self.status_change
        revived = sc is not None and sc[0] in states.RUN_TERMINAL and not done
        return Commit(
            run_id=self.run_id,
            event_id=self.event.id,
            guards=self.guards,
            writes=self.writes,
            deletes=self.deletes,
            history=self.history,
            outbox=self.outbox,
            timers=self.timers,
            cancel_timers=[t for t in self.cancel if t not in self.timers],
            status_change=self.status_change,
            created_ms=int(self.view.meta.get("created_ms") or 0),
            flow=self.flow,
            run_flow=self.flow or (self.view.meta.get("flow") or b"").decode(errors="replace"),
            expire_s=self.rules.retention_s if done else (-1 if revived else 0),
        )

    def request(self, name: str, attempt: int, mode: str = protocol.MODE_RUN) -> TaskRequest:
        spec = self.view.spec(name)
        wanted = list(spec.args.values()) + list(spec.optional.values())
        if mode == protocol.MODE_REVERT:
            wanted += spec.provides
        data = self.data(wanted)
        args: dict[str, Any] = {}
        for param, data_name in spec.args.items():
            raw = data.get(data_name)
            args[param] = None if raw is None else unpack(raw)
        for param, data_name in spec.optional.items():
            raw = data.get(data_name)
            if raw is not None:
                args[param] = unpack(raw)
        result: Any = None
        failure: dict[str, Any] | None = None
        if mode == protocol.MODE_REVERT:
            outs = {p: unpack(r) for p in spec.provides if (r := data.get(p)) is not None}
            result = outs if spec.unpack else outs.get(spec.provides[0]) if spec.provides else None
            err = self.state(name).error  # set only if its last attempt failed (a success clears it)
            if err is not None:
                failure, result = {**err, "attempt": attempt}, None
        rid = (protocol.revert_request_id if mode == protocol.MODE_REVERT else protocol.request_id)(
            self.run_id, name, attempt
        )
        return TaskRequest(
            id=rid,
            run_id=self.run_id,
            task=name,
            fn=spec.revert if mode == protocol.MODE_REVERT else spec.fn,
            attempt=attempt,
            args=args,
            provides=spec.provides,
            unpack=spec.unpack,
            at_ms=self.now,
            mode=mode,
            result=result,
            failure=failure,
            run_created=int(self.view.meta.get("created_ms") or 0),
            timeout_s=0.0 if mode == protocol.MODE_REVERT else spec.timeout_s,
        )

    def send(self, req: TaskRequest) -> None:
        """Put a task request in the outbox, to the task's queue."""
        self.outbox[req.id] = outbox_entry(task_queue(self.view.spec(req.task).queue), req)

    def send_event(self, event: Event) -> None:
        """Put an event for an engine (another run's: a child's submit, a parent's
        completion, a cancel) in the outbox, to the engine queue."""
        self.outbox[event.id] = outbox_entry(ENGINE_QUEUE, event)
