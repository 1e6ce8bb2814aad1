"""The Python API for producers and operators: submit, wait, status, history, list."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import keys, protocol, states
from runner.broker import ENGINE_QUEUE, Broker, Outgoing
from runner.config import Config
from runner.errors import EncodeError, PayloadTooLargeError, RunConflictError, RunNotFound, WaitTimeout
from runner.flows import Flow, FlowSpec, validate_inputs
from runner.protocol import Event, unpack
from runner.store import Store


@dataclass(frozen=True)
class TaskInfo:
    name: str
    status: str
    attempt: int
    worker: str = ""
    duration_ms: int | None = None
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    flow: str = ""
    created_ms: int = 0
    finished_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    tasks: dict[str, TaskInfo] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in states.RUN_TERMINAL


@dataclass(frozen=True)
class HistoryEntry:
    """One applied transition (or a refused event, with ``note``) of a run."""

    at_ms: int
    event: str
    kind: str
    scope: str  # "run" or a task name
    old: str
    new: str
    attempt: int
    extra: dict[str, Any]

    def describe(self) -> str:
        what = "run" if self.scope == "run" else f"task {self.scope}"
        att = f" (attempt {self.attempt})" if self.attempt and self.scope != "run" else ""
        line = (
            f"{what}{att}: {self.old} -> {self.new}" if self.old != self.new else f"{what}{att}: {self.new}"
        )
        if "error_type" in self.extra:
            line += f"  [{self.extra['error_type']}: {self.extra.get('error', '')}]"
        if "note" in self.extra:
            line += f"  ({self.extra['note']})"
        if self.extra.get("redelivered"):
            line += "  (redelivered event)"
        return line


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


class Client:
    """Talks to the state store and the broker; make one per thread."""

    def __init__(self, config: Config, store: Store, broker_factory: Callable[[], Broker]) -> None:
        self.config = config
        self.store = store
        self._broker_factory = broker_factory
        self._broker: Broker | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> Client:
        """A client for RabbitMQ + Redis as configured by ``ACKFLOW_*`` variables."""
        from runner.kombu_broker import KombuBroker
        from runner.redis_store import RedisStore

        config = Config.from_env(**overrides)
        return cls(config, RedisStore(config), lambda: KombuBroker(config))

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = self._broker_factory()
        return self._broker

    # --- submit ------------------------------------------------------------------------

    def submit(
        self,
        flow: Flow | FlowSpec,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
    ) -> str:
        """Validate, then enqueue a run; idempotent by ``run_id``. Returns the run id.

        Raises `FlowDefinitionError` (bad flow or missing input), `PayloadTooLargeError`,
        `EncodeError` (inputs msgpack cannot carry) or `RunConflictError` (the id was used for a
        different flow or inputs) before anything is enqueued.
        """
        spec = flow if isinstance(flow, FlowSpec) else flow.compile()
        inputs = dict(inputs or {})
        validate_inputs(spec, inputs)
        run_id = keys.check_run_id(run_id or uuid.uuid4().hex)
        spec_data = spec.to_data()
        try:
            body = {"flow": spec.name, "spec": spec_data, "inputs": inputs}
            event = Event(
                protocol.RUN_SUBMIT, protocol.submit_id(run_id), run_id, body=body, at_ms=protocol.now_ms()
            )
            payload = protocol.encode(event)
        except EncodeError as e:
            raise EncodeError(f"the run's inputs cannot be sent: {e}") from None
        if len(payload) > self.config.max_payload_bytes:
            raise PayloadTooLargeError(
                "the run's submit message (flow spec and inputs)", len(payload), self.config.max_payload_bytes
            )
        digest = hashlib.sha256(protocol.pack([spec_data, inputs])).hexdigest().encode()
        existing = self.store.reserve(run_id, digest)
        if existing is not None and existing != digest:
            raise RunConflictError(run_id)
        self.broker.publish([Outgoing(ENGINE_QUEUE, event.id, payload)])
        return run_id

    # --- inspect -----------------------------------------------------------------------

    def status(self, run_id: str) -> RunInfo:
        meta = self.store.read_all(run_id, keys.META)
        if not meta:
            raise RunNotFound(run_id)
        tasks = {}
        for name, raw in sorted(self.store.read_all(run_id, keys.TASKS).items()):
            st = unpack(raw)
            tasks[name] = TaskInfo(name, st["s"], st["a"], st.get("w", ""), st.get("ms"), st.get("err"))
        for name in self.store.read_all(run_id, keys.SPEC):
            tasks.setdefault(name, TaskInfo(name, states.PENDING, 0))
        return RunInfo(
            run_id=run_id,
            status=meta.get("status", states.PENDING.encode()).decode(),
            flow=meta.get("flow", b"").decode(),
            created_ms=_int(meta.get("created_ms")) or 0,
            finished_ms=_int(meta.get("finished_ms")),
            result=unpack(meta["result"]) if "result" in meta else None,
            error=unpack(meta["error"]) if "error" in meta else None,
            tasks=dict(sorted(tasks.items())),
        )

    def history(self, run_id: str, start: int = 0) -> list[HistoryEntry]:
        entries = []
        for raw in self.store.history(run_id, start):
            d = dict(unpack(raw))
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
            raise RunNotFound(run_id)
        return entries

    def list(self, status: str | None = None, limit: int = 50) -> list[RunInfo]:
        out = []
        for run_id in self.store.list_runs(status, limit):
            meta = self.store.read(run_id, {keys.META: ["status", "flow", "created_ms", "finished_ms"]})[
                keys.META
            ]
            if meta[0] is None:
                continue
            out.append(
                RunInfo(
                    run_id, meta[0].decode(), (meta[1] or b"").decode(), _int(meta[2]) or 0, _int(meta[3])
                )
            )
        return out

    def wait(
        self,
        run_id: str,
        timeout_s: float | None = None,
        on_history: Callable[[HistoryEntry], None] | None = None,
    ) -> RunInfo:
        """Block until the run finishes; ``on_history`` sees each transition as it is applied."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        watch = self.store.watch(run_id)
        seen = 0
        try:
            while True:
                info = self._peek(run_id)  # before the history, so none of it is missed
                if on_history is not None:
                    new = self.history(run_id, seen) if seen or self._exists(run_id) else []
                    seen += len(new)
                    for entry in new:
                        on_history(entry)
                if info.done:
                    return self.status(run_id)
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(run_id, timeout_s or 0.0, info.status)
                slice_s = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                watch.wait(slice_s)  # woken by each commit; the slice bounds a missed notice
        finally:
            watch.close()

    def _exists(self, run_id: str) -> bool:
        return bool(self.store.read(run_id, {keys.META: ["status"]})[keys.META][0])

    def _peek(self, run_id: str) -> RunInfo:
        meta = self.store.read(run_id, {keys.META: ["status", "digest"]})[keys.META]
        if meta[0] is None and meta[1] is None:
            raise RunNotFound(run_id)
        return RunInfo(run_id, (meta[0] or states.PENDING.encode()).decode())

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        self.store.close()
