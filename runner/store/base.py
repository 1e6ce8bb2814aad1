"""The state store's contract: guarded atomic commits of one run's state plus its outbox.

A store offers one write primitive, `Store.commit`: "if this event id is new and these
guards still hold, apply these writes, append this history, record these outbox messages
and remember the event id — all at once". The engine decides what to write in plain Python
(`runner.decide`); the store only applies it. Redis does it in one Lua script
(`runner.store.redis`), the in-memory store under a lock (`runner.store.memory`); both pass
the same contract tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# (hash part, field, expected raw value or None meaning "absent")
Guard = tuple[str, str, "bytes | None"]


@dataclass(frozen=True)
class Commit:
    """Everything one event changes in one run."""

    run_id: str
    event_id: str
    guards: Sequence[Guard] = ()
    writes: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)  # part -> field -> value
    history: Sequence[bytes] = ()
    outbox: Mapping[str, bytes] = field(default_factory=dict)  # message id -> packed message
    deletes: Mapping[str, Sequence[str]] = field(default_factory=dict)  # part -> fields to delete
    timers: Mapping[str, tuple[int, bytes]] = field(default_factory=dict)  # timer id -> (due ms, event)
    cancel_timers: Sequence[str] = ()  # timer ids of this run to forget
    status_change: tuple[str, str] | None = None  # (old or "", new): keeps the status indexes
    created_ms: int = 0  # the run's creation time, the score in the indexes
    flow: str = ""  # set when the run is created: indexes it under its flow name
    run_flow: str = ""  # the run's flow name, for the metrics (not written)
    expire_s: int = 0  # > 0 once the run is finished: all its keys expire after this; -1: never again


@dataclass(frozen=True)
class CommitResult:
    """``applied``; or ``duplicate`` with the outbox entries still unsent; or ``conflict``."""

    outcome: str  # "applied" | "duplicate" | "conflict"
    unsent: dict[str, bytes] = field(default_factory=dict)
    conflict_guard: int = -1

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


APPLIED_RESULT = CommitResult("applied")


@dataclass(frozen=True)
class DueTimer:
    """A timer an engine has claimed: publish ``event`` (an encoded timer.fired), then remove it."""

    run_id: str
    timer_id: str
    event: bytes


@dataclass(frozen=True)
class Beat:
    """The answer to a worker's heartbeat for one running attempt."""

    leased: bool  # the attempt's lease exists and was extended
    run_status: str | None  # None: the run is gone


class Watch(Protocol):
    """Wakes a waiter when a run changes; `wait` returns early on a change."""

    def wait(self, timeout_s: float, status_only: bool = False) -> bool:
        """Wait up to ``timeout_s`` for a change of the run (with ``status_only``, a change
        of its status); True if one came. Changes before the call may or may not count."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    def read(self, run_id: str, wants: Mapping[str, Sequence[str]]) -> dict[str, list[bytes | None]]:
        """Read fields of a run's hashes in one round trip: part -> values in order."""
        ...

    def read_all(self, run_id: str, part: str) -> dict[str, bytes]:
        """One whole hash of a run (for status views, not the per-event path)."""
        ...

    def commit(self, c: Commit) -> CommitResult: ...

    def read_many(
        self, reads: Sequence[tuple[str, Mapping[str, Sequence[str]]]]
    ) -> list[dict[str, list[bytes | None]]]:
        """`read` for several (run id, wants) at once, in one round trip where the store can."""
        ...

    def commit_many(self, commits: Sequence[Commit]) -> list[CommitResult]:
        """`commit` each of ``commits`` (of distinct runs), in one round trip where the store
        can; each is atomic on its own, as with `commit`, and each result is its own."""
        ...

    def count_delivery(self, run_id: str, event_id: str, delta: int = 1) -> int:
        """Count one more processing of a redelivered event; return the count (poison detection)."""
        ...

    def mark_sent(self, run_id: str, message_ids: Sequence[str]) -> None:
        """Forget outbox entries once the broker has confirmed them."""
        ...

    def mark_sent_many(self, sent: Mapping[str, Sequence[str]]) -> None:
        """`mark_sent` for several runs at once (run id -> message ids), in one round trip."""
        ...

    def history(self, run_id: str, start: int = 0) -> list[bytes]: ...

    def claim_timers(self, now_ms: int, limit: int, hold_ms: int) -> tuple[list[DueTimer], int | None]:
        """Claim up to ``limit`` due timers (hidden from other engines for ``hold_ms``).

        Returns them and the due time of the earliest timer left, if any.
        """
        ...

    def remove_timers(self, timers: Sequence[DueTimer]) -> None:
        """Forget timers once their events are confirmed by the broker."""
        ...

    def heartbeat(self, run_id: str, task: str, attempt: int, until_ms: int, progress: bytes | None) -> Beat:
        """Extend the lease of this attempt (if it holds one) to ``until_ms``; store its progress."""
        ...

    def reserve(self, run_id: str, digest: bytes) -> bytes | None:
        """Record a submit's digest if the run id is new; return the digest already there, if any."""
        ...

    def list_runs(self, status: str | None, limit: int) -> list[str]:
        """Newest first."""
        ...

    def page_runs(
        self,
        status: str | None,
        flow: str | None,
        since_ms: int = 0,
        before_ms: int | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[str, int]], int | None]:
        """A page of (run id, created ms), newest first, created in [since_ms, before_ms);
        and the cursor (``before_ms``) of the next page, or None. Reads one index (never the
        whole run set): the flow-and-status index, the status's or the flow's."""
        ...

    def count_runs(self, status: str | None) -> int:
        """Runs in the index (all, or of one status); expired ones may linger until listed."""
        ...

    def watch(self, run_id: str) -> Watch: ...

    # --- the flow registry (runner.client.flows) -------------------------------------------

    def put_flow(self, name: str, digest: str, spec: bytes, info: bytes) -> None:
        """Keep version ``digest`` of flow ``name`` (its packed spec) and make it the latest,
        described by ``info`` (packed), in one step."""
        ...

    def get_flow(self, name: str, digest: str) -> bytes | None:
        """The packed spec of that version of the flow, or None."""
        ...

    def list_flows(self) -> dict[str, bytes]:
        """Each registered flow's name -> the info of its latest version."""
        ...

    def flow_digests(self, name: str) -> list[str]:
        """The versions (digests) kept of a flow."""
        ...

    # --- the task catalogue (runner.client.catalogue) -------------------------------------

    def put_task(self, name: str, digest: str, entry: bytes, info: bytes) -> None:
        """Keep version ``digest`` of task ``name``'s catalogue entry (packed) and make it the
        latest, described by ``info`` (packed, the entry included), in one step."""
        ...

    def get_task(self, name: str, digest: str) -> bytes | None:
        """The packed catalogue entry of that version of the task, or None."""
        ...

    def list_tasks(self) -> dict[str, bytes]:
        """Each catalogued task's name -> the info of its latest entry."""
        ...

    # --- schedules (runner.schedule): records by name, each next firing a timer ---------------

    def get_schedule(self, name: str) -> bytes | None:
        """A schedule's packed record, or None."""
        ...

    def list_schedules(self) -> dict[str, bytes]:
        """Every schedule: name -> packed record."""
        ...

    def swap_schedule(self, name: str, expected: bytes | None, new: bytes | None, arm_ms: int | None) -> bool:
        """If schedule ``name``'s record is ``expected`` (None: there is none), make it ``new``
        (None: delete it) and, with ``arm_ms``, arm its timer for then — in one step on one
        server (on a Redis Cluster the timer follows: `arm_schedule` repairs a crash between).
        False, changing nothing, if the record is not ``expected`` — unless it is ``new``
        already: a repeat of the same swap (a retried command) answers True."""
        ...

    def arm_schedule(self, name: str, due_ms: int) -> None:
        """Arm schedule ``name``'s timer for ``due_ms`` unless it is armed (or claimed) already."""
        ...

    # --- durability (runner.engine.durability) -------------------------------------------------

    def session(self) -> int:
        """A number that changes whenever the store (re)connected to its server: callers
        re-check the server's settings and epoch then, not on every command."""
        ...

    def durability_settings(self) -> dict[str, str] | None:
        """The server's persistence settings (appendonly, appendfsync, maxmemory-policy,
        save); None if they cannot be read (CONFIG disabled or renamed). The memory store
        answers {"memory": "yes"}: volatile by design."""
        ...

    def epoch(self, candidate: str) -> str:
        """The deployment epoch: set to ``candidate`` if there is none (atomically), then
        returned. It never expires, so a different answer means the data was lost."""
        ...

    def record_lost(self, run_id: str, now_ms: int, keep_s: int) -> bool:
        """Remember that a run was lost (for ``keep_s``); True the first time only."""
        ...

    def is_lost(self, run_id: str) -> bool:
        """Whether `record_lost` remembers this run."""
        ...

    # --- the fleet: workers and queues (runner.presence, `ackflow workers|queues`) ----------------

    def beat_worker(self, worker_id: str, record: bytes, now_ms: int, keep_s: int) -> None:
        """Keep a worker's latest record, heard at ``now_ms``; forget every worker not heard
        from for ``keep_s``."""
        ...

    def workers(self, now_ms: int, keep_s: int) -> list[tuple[str, bytes, int]]:
        """(worker id, latest record, ms last heard) of each worker heard from in the last
        ``keep_s``, by id."""
        ...

    def note_queues(self, queues: Sequence[str], now_ms: int) -> None:
        """Remember that runs use these task queues (so a queue nobody consumes is known)."""
        ...

    def noted_queues(self, since_ms: int) -> list[str]:
        """The task queues noted at or after ``since_ms``, by name; older ones are forgotten."""
        ...

    def close(self) -> None: ...
