"""The Python API for producers and operators: submit, wait, status, history, list, control."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from runner import caps, connect, protocol, states, submission
from runner.broker import ENGINE_QUEUE, Broker, Outgoing
from runner.client import completion, flows
from runner.client.info import HistoryEntry, RunInfo, TaskInfo, who
from runner.client.schedules import Schedules
from runner.client.tokens import make_token
from runner.config import Config
from runner.decide.records import TaskProgress, TaskState, history_entry
from runner.define.flows import Flow
from runner.define.spec import FlowSpec, TaskSpec, dependency_order, input_names, validate_inputs
from runner.errors import (
    RunConflictError,
    RunLost,
    RunNotFound,
    RunStateError,
    WaitTimeout,
)
from runner.protocol import Event, unpack
from runner.store import Store, keys

# A run's deadline the engine can keep (its timer's time must fit the protocol's integers);
# beyond it, or infinite, the submit was dead-lettered and the run left PENDING for good.
MAX_DEADLINE_S = 100 * 365 * 86400
NOTE_EVERY_MS = 600_000  # how often one client notes a queue again (runs use it still)


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


class Client:
    """Talks to the state store and the broker; make one per thread."""

    def __init__(self, config: Config, store: Store, broker_factory: Callable[[], Broker]) -> None:
        self.config = config
        self.store = store
        self._broker_factory = broker_factory
        self._broker: Broker | None = None
        self._shapes: dict[bytes, tuple[list[str], list[str]]] = {}  # spec_id -> `_shape`
        self._noted: dict[str, int] = {}  # task queue -> when this client last noted it (ms)

    @classmethod
    def from_config(cls, config: Config) -> Client:
        """A client for the Redis store and RabbitMQ of ``config``; its broker opens on first use."""
        return cls(config, connect.open_store(config), lambda: connect.open_broker(config))

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        """A client for RabbitMQ + Redis as configured by ``ACKFLOW_*`` variables."""
        return cls.from_config(Config.from_env(**overrides))

    @property
    def schedules(self) -> Schedules:
        """The schedules (`runner.client.schedules`): add, list, get, pause, resume, delete."""
        return Schedules(self.store, self.config.max_payload_bytes)

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = self._broker_factory()
        return self._broker

    # --- submit ------------------------------------------------------------------------

    def submit(
        self,
        flow: Flow | FlowSpec | str,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout_s: float | None = None,
        version: str | None = None,
    ) -> str:
        """Validate, then enqueue a run; idempotent by ``run_id``. Returns the run id.

        ``timeout_s`` is the run's deadline: if it has not finished by then it fails with
        ``RunTimeout`` (and its completed tasks are reverted, if they have revert handlers).

        ``flow`` is a flow, its compiled spec, or the name of a registered flow (see
        `runner.client.flows`; its latest version, or the one ``version`` names by digest).

        Raises `FlowDefinitionError` (bad flow, unknown flow name, missing, unknown or mistyped
        input), `PayloadTooLargeError`,
        `EncodeError` (inputs msgpack cannot carry) or `RunConflictError` (the id was used for a
        different flow or inputs) before anything is enqueued.
        """
        if isinstance(flow, str):  # by name, from the flow registry (its latest, or ``version``)
            spec = flows.get(self.store, flow, version)
        else:
            spec = flow if isinstance(flow, FlowSpec) else flow.compile()
        inputs = dict(inputs or {})
        validate_inputs(spec, inputs)
        run_id = keys.check_run_id(run_id or uuid.uuid4().hex)
        if timeout_s is not None and not 0 < timeout_s <= MAX_DEADLINE_S:  # also refuses nan
            raise ValueError(
                f"timeout_s must be > 0 and at most {MAX_DEADLINE_S} s (100 years), not {timeout_s!r}"
            )
        event, payload, digest = submission.build(
            spec, inputs, run_id, timeout_s, self.config.max_payload_bytes
        )
        existing = self.store.reserve(run_id, digest)
        if existing is not None and existing != digest:
            raise RunConflictError(run_id)
        self._note_queues({t.queue for t in spec.tasks.values()})
        self.broker.publish([Outgoing(ENGINE_QUEUE, event.id, payload)])
        return run_id

    def _note_queues(self, queues: set[str]) -> None:
        """Note the queues a run's tasks wait on, so that one nobody consumes shows in ``ackflow
        queues``; each at most every NOTE_EVERY_MS from this client (not a write per submit)."""
        now = protocol.now_ms()
        due = sorted(q for q in queues if self._noted.get(q, -NOTE_EVERY_MS) <= now - NOTE_EVERY_MS)
        if due:
            self.store.note_queues(due, now)
            self._noted.update(dict.fromkeys(due, now))

    # --- control (DESIGN G7) ------------------------------------------------------------

    def cancel(self, run_id: str, reason: str = "", *, wait_s: float | None = 10.0) -> str:
        """Cancel a pending, running or paused run. Tasks not yet running are skipped;
        running ones are told (`TaskContext.cancel_requested`) and their results ignored.
        Returns the run's status once the engine applied it (or, with ``wait_s=None``, at once).
        """
        return self._control(run_id, protocol.RUN_CANCEL, "cancel", reason, wait_s)

    def pause(self, run_id: str, reason: str = "", *, wait_s: float | None = 10.0) -> str:
        """Pause a running run: running tasks finish, nothing new starts until `resume`."""
        return self._control(run_id, protocol.RUN_PAUSE, "pause", reason, wait_s)

    def resume(self, run_id: str, reason: str = "", *, wait_s: float | None = 10.0) -> str:
        """Resume a paused run: the tasks that became ready meanwhile start."""
        return self._control(run_id, protocol.RUN_RESUME, "resume", reason, wait_s)

    def retry(self, run_id: str, reason: str = "", *, wait_s: float | None = 10.0) -> str:
        """Run a FAILED run again from its failed tasks; completed results are kept."""
        return self._control(run_id, protocol.RUN_RETRY, "retry", reason, wait_s)

    def _control(self, run_id: str, kind: str, action: str, reason: str, wait_s: float | None) -> str:
        before = self._peek(run_id).status
        if not states.control_allowed(action, before):
            raise RunStateError(run_id, action, before, "/".join(states.CONTROL_ALLOWED[action]))
        event = Event(
            kind,
            f"{kind}:{run_id}:{uuid.uuid4().hex}",
            run_id,
            body={"by": who(), "reason": reason},
            at_ms=protocol.now_ms(),
        )
        entries = self.send_and_await(event, wait_s)
        if entries is None:
            return before
        for entry in entries:
            if entry.scope == "run" and entry.old != entry.new:
                return entry.new
        # Raced with another change and was ignored by the engine.
        raise RunStateError(
            run_id, action, self._peek(run_id).status, "/".join(states.CONTROL_ALLOWED[action])
        )

    def send_and_await(self, event: Event, wait_s: float | None) -> list[HistoryEntry] | None:
        """Publish an event to the engines; with ``wait_s``, return the history entries it
        produced once an engine applied it (`WaitTimeout` if none did in time)."""
        seen = len(self.store.history(event.run_id))
        self.broker.publish([Outgoing(ENGINE_QUEUE, event.id, protocol.encode(event))])
        if wait_s is None:
            return None
        deadline = time.monotonic() + wait_s
        watch = self.store.watch(event.run_id)
        try:
            while True:
                new = self.history(event.run_id, seen)
                seen += len(new)
                mine = [e for e in new if e.event == event.id]
                if mine:  # one commit appends all of an event's entries at once
                    return mine
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(event.run_id, wait_s, self._peek(event.run_id).status)
                watch.wait(min(left, 1.0))
        finally:
            watch.close()

    # --- lazy tasks (runner.lazy) ---------------------------------------------------------

    def complete(self, token: str, result: Any = None, *, wait_s: float | None = 10.0) -> str:
        """Complete the waiting task ``token`` names with ``result`` (what the task would have
        returned). Returns "completed", or "accepted" if no engine applied it within
        ``wait_s``. Raises `InvalidToken`, `AlreadyCompleted`, `CompletionRefused` (the run
        is finished or cancelled, or the task is not waiting) or `ValueError` (a result that
        does not fit the task) — and then nothing has changed."""
        return completion.complete(self, token, result, None, wait_s)

    def token_for(self, run_id: str, task: str) -> str:
        """The completion token of a run's lazy task (what the task itself was given);
        needs the secret. For tools and tests: outside systems get it from the task."""
        created = self.store.read(run_id, {keys.META: ["created_ms"]})[keys.META][0]
        if created is None:
            raise RunNotFound(run_id)
        return make_token(self.config.secret, self.config.prefix, run_id, int(created), task)

    def fail(
        self, token: str, error: str, *, error_type: str = "ExternalError", wait_s: float | None = 10.0
    ) -> str:
        """Fail the waiting task ``token`` names (its retry policy applies). Returns "failed"
        or "accepted"; raises like `complete`. The message and type are cut to the caps a
        worker applies to a task's own exception (`runner.caps`)."""
        err = caps.cap_error({"type": error_type, "message": error, "types": [error_type]})
        return completion.complete(self, token, None, err, wait_s)

    # --- inspect -----------------------------------------------------------------------

    def status(self, run_id: str) -> RunInfo:
        meta = self.store.read_all(run_id, keys.META)
        if not meta:
            raise self._missing(run_id)
        leases = self.store.read_all(run_id, keys.LEASES)
        order, names = self._shape(meta.get("spec_id"), self.store.read_all(run_id, keys.SPEC))
        tasks = {}
        for name, raw in sorted(self.store.read_all(run_id, keys.TASKS).items()):
            if keys.item_of(name) is not None:
                continue  # an element of a map node: its node shows how many are done
            st = TaskState.decode(raw)
            progress = None
            if st.status == states.RUNNING and st.items:
                done = st.items_done or 0
                progress = (done / st.items, f"{done} of {st.items} items")
            praw = leases.get(keys.progress_field(name))
            if praw is not None and st.status == states.RUNNING:
                p = TaskProgress.decode(praw)
                if p.attempt == st.attempt:
                    progress = (p.fraction, p.message)
            tasks[name] = TaskInfo(
                name,
                st.status,
                st.attempt,
                st.worker or "",
                st.duration_ms,
                st.error,
                progress,
                st.retry_at_ms,
                st.revert_error,
                st.child,
                st.started_ms,
                st.finished_ms,
                st.waiting_ms,
            )
        for name in order:
            tasks.setdefault(name, TaskInfo(name, states.PENDING, 0))
        tasks = {n: tasks[n] for n in [*order, *sorted(set(tasks) - set(order))]}
        values = self.store.read(run_id, {keys.DATA: names})[keys.DATA] if names else []
        inputs = {n: unpack(v) for n, v in zip(names, values, strict=True) if v is not None}
        return RunInfo(
            run_id=run_id,
            status=meta.get("status", states.PENDING.encode()).decode(),
            flow=meta.get("flow", b"").decode(),
            created_ms=_int(meta.get("created_ms")) or 0,
            finished_ms=_int(meta.get("finished_ms")),
            result=unpack(meta["result"]) if "result" in meta else None,
            error=unpack(meta["error"]) if "error" in meta else None,
            tasks=tasks,
            parent=_parent(meta.get("parent")),
            inputs=inputs,
            control=unpack(meta["control"]) if "control" in meta else None,
        )

    def _shape(self, spec_id: bytes | None, raw_specs: Mapping[str, bytes]) -> tuple[list[str], list[str]]:
        """The run's tasks in dependency order and its input names: decoded once per flow
        version (``spec_id``; the specs of a run never change), not at each status."""
        shape = self._shapes.get(spec_id) if spec_id else None
        if shape is None:
            specs = {n: TaskSpec.from_data(unpack(raw)) for n, raw in raw_specs.items()}
            shape = (dependency_order(specs), input_names(specs))
            if spec_id:
                if len(self._shapes) >= 256:
                    self._shapes.clear()
                self._shapes[spec_id] = shape
        return shape

    def history(self, run_id: str, start: int = 0) -> list[HistoryEntry]:
        entries = []
        for raw in self.store.history(run_id, start):
            d = history_entry(raw, run_id)
            entries.append(
                HistoryEntry(
                    at_ms=d.pop("at"),
                    event=d.pop("event"),
                    kind=d.pop("kind"),
                    scope=d.pop("scope"),
                    old=d.pop("from"),
                    new=d.pop("to"),
                    attempt=d.pop("attempt", 0),
                    extra=d,
                )
            )
        if not entries and start == 0 and not self.store.read_all(run_id, keys.META):
            raise self._missing(run_id)
        return entries

    def page(
        self,
        status: str | None = None,
        flow: str | None = None,
        since_ms: int = 0,
        before_ms: int | None = None,
        limit: int = 50,
    ) -> tuple[list[RunInfo], int | None]:
        """One page of runs, newest first, without their tasks, and the cursor of the next
        (pass it as ``before_ms``; None: this is the last page)."""
        rows, cursor = self.store.page_runs(status, flow, since_ms, before_ms, limit)
        return [info for info in (self._summary(run_id) for run_id, _ in rows) if info], cursor

    def counts(self) -> dict[str | None, int]:
        """How many runs there are in each status (the key None: all of them)."""
        out: dict[str | None, int] = {s: self.store.count_runs(s) for s in states.RUN_STATES}
        out[None] = self.store.count_runs(None)
        return out

    def specs(self, run_id: str) -> dict[str, TaskSpec]:
        """The run's tasks as it was submitted with them, by name."""
        return {
            n: TaskSpec.from_data(unpack(raw))
            for n, raw in sorted(self.store.read_all(run_id, keys.SPEC).items())
        }

    def list(self, status: str | None = None, limit: int = 50) -> list[RunInfo]:
        """The newest runs (of ``status``, if given), without their tasks."""
        return [info for info in map(self._summary, self.store.list_runs(status, limit)) if info]

    def _summary(self, run_id: str) -> RunInfo | None:
        meta = self.store.read(run_id, {keys.META: ["status", "flow", "created_ms", "finished_ms"]})[
            keys.META
        ]
        if meta[0] is None:
            return None  # gone (expired) since it was listed
        return RunInfo(run_id, meta[0].decode(), (meta[1] or b"").decode(), _int(meta[2]) or 0, _int(meta[3]))

    def wait(
        self,
        run_id: str,
        timeout_s: float | None = None,
        on_history: Callable[[HistoryEntry], None] | None = None,
        on_progress: Callable[[str, float, str], None] | None = None,
    ) -> RunInfo:
        """Block until the run finishes; ``on_history`` sees each transition as it is applied,
        ``on_progress(task, fraction, message)`` each progress report of a running task."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        watch = self.store.watch(run_id)
        seen = 0
        reported: dict[str, bytes] = {}
        last: str | None = None  # the status last seen: the run existed
        try:
            while True:
                try:
                    info = self._peek(run_id)  # before the history, so none of it is missed
                except RunNotFound:
                    if last is None:
                        raise
                    # It existed and was not finished (wait returns at the end): its state
                    # vanished (a flush, a failover, an eviction), whether or not an engine
                    # has noticed yet. Never "no such run", which would read as a typo.
                    raise RunLost(run_id, f" (it was {last} when last seen)") from None
                last = info.status
                if on_history is not None:
                    new = self.history(run_id, seen) if seen or self._exists(run_id) else []
                    seen += len(new)
                    for entry in new:
                        on_history(entry)
                if on_progress is not None:
                    for fld, raw in sorted(self.store.read_all(run_id, keys.LEASES).items()):
                        task, sep, kind = fld.partition(keys.JOIN_SEP)
                        if sep and kind == "p" and reported.get(task) != raw:
                            reported[task] = raw
                            p = TaskProgress.decode(raw)
                            on_progress(task, p.fraction, p.message)
                if info.done:
                    return self.status(run_id)
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(run_id, timeout_s or 0.0, info.status)
                slice_s = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                # woken by each commit (or, with nobody to tell of them, by each change of
                # the run's status); the slice bounds a missed notice
                watch.wait(slice_s, status_only=on_history is None and on_progress is None)
        finally:
            watch.close()

    def _exists(self, run_id: str) -> bool:
        return bool(self.store.read(run_id, {keys.META: ["status"]})[keys.META][0])

    def _peek(self, run_id: str) -> RunInfo:
        meta = self.store.read(run_id, {keys.META: ["status", "digest"]})[keys.META]
        if meta[0] is None and meta[1] is None:
            raise self._missing(run_id)
        return RunInfo(run_id, (meta[0] or states.PENDING.encode()).decode())

    def _missing(self, run_id: str) -> RunNotFound:
        """`RunLost` if an engine recorded the run as lost, else `RunNotFound`."""
        return RunLost(run_id) if self.store.is_lost(run_id) else RunNotFound(run_id)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        self.store.close()


def _parent(raw: bytes | None) -> tuple[str, str, int] | None:
    if not raw:
        return None
    run, task, attempt = unpack(raw)
    return str(run), str(task), int(attempt)
