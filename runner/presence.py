"""Workers' heartbeat records: what a worker says of itself in Redis, and how it is read back.

Each worker writes a `WorkerRecord` every ``worker_beat_s`` (workers.presence) through
`Store.beat_worker`; `ackflow workers`, the dashboard and the metrics read them with
`list_workers`. A worker is *live* while it was heard within three beats, *lost* after that (it
died or froze, or cannot reach Redis) and *stopped* once it said so on a clean shutdown; the
store forgets it ``worker_keep_s`` after it was last heard.

Liveness compares the reader's clock with the writer's (as leases do): keep clocks in sync.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from runner import protocol
from runner.errors import DecodeError
from runner.store import Store

LIVE, LOST, STOPPED = "live", "lost", "stopped"
BEATS_BEFORE_LOST = 3  # a worker silent for this many beats is lost


@functools.cache  # the installed version cannot change under a running process; reading
def ackflow_version() -> str:  # the package metadata costs milliseconds (each worker start)
    try:
        return version("ackflow")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
        return "unknown"


@dataclass(frozen=True)
class RunningTask:
    run_id: str
    task: str
    attempt: int
    since_ms: int


@dataclass(frozen=True)
class WorkerRecord:
    """A worker as it last described itself."""

    id: str
    host: str
    pid: int
    queues: list[str]  # the task queues it consumes, as named on `ackflow worker -Q`
    concurrency: int
    tasks: list[str]  # the tasks it can run
    running: list[RunningTask] = field(default_factory=list)
    unacked: dict[str, int] = field(default_factory=dict)  # task queue -> deliveries it holds
    started_ms: int = 0
    version: str = ""
    beat_s: float = 5.0
    stopped_ms: int = 0  # set by its last record, on a clean shutdown
    heard_ms: int = 0  # when the store last heard from it (not part of what it writes)

    def encode(self) -> bytes:
        data = asdict(self)
        data.pop("heard_ms")
        data["running"] = [[r.run_id, r.task, r.attempt, r.since_ms] for r in self.running]
        return protocol.pack(data)

    @classmethod
    def decode(cls, raw: bytes, heard_ms: int) -> WorkerRecord:
        """A stored record; `DecodeError` if it is not one (another version's, or damaged)."""
        try:
            d: dict[str, Any] = protocol.unpack(raw)
            return cls(
                id=str(d["id"]),
                host=str(d.get("host", "")),
                pid=int(d.get("pid", 0)),
                queues=[str(q) for q in d.get("queues", [])],
                concurrency=int(d.get("concurrency", 0)),
                tasks=[str(t) for t in d.get("tasks", [])],
                running=[RunningTask(str(r), str(t), int(a), int(s)) for r, t, a, s in d.get("running", [])],
                unacked={str(q): int(n) for q, n in d.get("unacked", {}).items()},
                started_ms=int(d.get("started_ms", 0)),
                version=str(d.get("version", "")),
                beat_s=float(d.get("beat_s", 5.0)),
                stopped_ms=int(d.get("stopped_ms", 0)),
                heard_ms=heard_ms,
            )
        except Exception as e:  # noqa: BLE001 - any shape msgpack can hold
            raise DecodeError(f"not a worker record: {type(e).__name__}: {e}") from None

    def state(self, now_ms: int) -> str:
        if self.stopped_ms:
            return STOPPED
        silent_ms = now_ms - self.heard_ms
        return LIVE if silent_ms <= BEATS_BEFORE_LOST * self.beat_s * 1000 else LOST

    def as_json(self, now_ms: int) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state(now_ms)
        return data


def list_workers(store: Store, now_ms: int, keep_s: int) -> list[WorkerRecord]:
    """The workers heard from in the last ``keep_s``, live first, then by id. Records that
    cannot be read are left out."""
    out = []
    for _wid, raw, heard in store.workers(now_ms, keep_s):
        try:
            out.append(WorkerRecord.decode(raw, heard))
        except DecodeError:
            continue
    order = {LIVE: 0, LOST: 1, STOPPED: 2}
    return sorted(out, key=lambda w: (order[w.state(now_ms)], w.id))
