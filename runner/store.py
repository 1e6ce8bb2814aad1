"""The state store's contract: guarded atomic commits of one run's state plus its outbox.

A store offers one write primitive, `Store.commit`: "if this event id is new and these
guards still hold, apply these writes, append this history, record these outbox messages
and remember the event id — all at once". The engine decides what to write in plain Python
(`runner.transitions`); the store only applies it. Redis does it in one Lua script
(`runner.redis_store`), the in-memory store under a lock (`runner.memory_store`); both pass
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
    status_change: tuple[str, str] | None = None  # (old or "", new): keeps the status indexes
    created_ms: int = 0  # the run's creation time, the score in the indexes
    expire_s: int = 0  # > 0 once the run is finished: all its keys expire after this


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


class Watch(Protocol):
    """Wakes a waiter when a run changes; `wait` returns early on a change."""

    def wait(self, timeout_s: float) -> bool: ...
    def close(self) -> None: ...


class Store(Protocol):
    def read(self, run_id: str, wants: Mapping[str, Sequence[str]]) -> dict[str, list[bytes | None]]:
        """Read fields of a run's hashes in one round trip: part -> values in order."""
        ...

    def read_all(self, run_id: str, part: str) -> dict[str, bytes]:
        """One whole hash of a run (for status views, not the per-event path)."""
        ...

    def commit(self, c: Commit) -> CommitResult: ...

    def count_delivery(self, run_id: str, event_id: str, delta: int = 1) -> int:
        """Count one more processing of a redelivered event; return the count (poison detection)."""
        ...

    def mark_sent(self, run_id: str, message_ids: Sequence[str]) -> None:
        """Forget outbox entries once the broker has confirmed them."""
        ...

    def history(self, run_id: str, start: int = 0) -> list[bytes]: ...

    def reserve(self, run_id: str, digest: bytes) -> bytes | None:
        """Record a submit's digest if the run id is new; return the digest already there, if any."""
        ...

    def list_runs(self, status: str | None, limit: int) -> list[str]:
        """Newest first."""
        ...

    def watch(self, run_id: str) -> Watch: ...

    def close(self) -> None: ...
