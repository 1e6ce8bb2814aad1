"""What a running task can know about itself, and tell: its identity, progress, cancellation."""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field

from runner.errors import AckflowError


@dataclass
class LiveState:
    """Shared between the task's thread and the worker's heartbeat thread."""

    progress: tuple[float, str] | None = None
    version: int = 0  # bumped by each progress report
    cancelled: bool = False  # the run was cancelled
    fenced: bool = False  # this attempt lost its lease: another attempt took over
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class TaskContext:
    run_id: str
    task: str
    attempt: int
    live: LiveState = field(default_factory=LiveState, compare=False, repr=False)
    completion_token: str = field(default="", compare=False, repr=False)  # lazy tasks (runner.lazy)

    @property
    def idempotency_key(self) -> str:
        """The same string for every execution of this attempt (G2): guard side effects with it."""
        return f"{self.run_id}:{self.task}:{self.attempt}"

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0.0-1.0, and a short message); shown by ``ackflow status`` and
        ``submit --wait``. Cheap: the worker's heartbeat thread sends the latest value."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        with self.live.lock:
            self.live.progress = (float(fraction), str(message)[:200])
            self.live.version += 1

    @property
    def cancel_requested(self) -> bool:
        """True once the run is cancelled or this attempt was superseded: stop early if you can.

        Learnt from the worker's heartbeats, so it can lag by a heartbeat interval.
        """
        return self.live.cancelled or self.live.fenced


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("ackflow_task")


def current_task() -> TaskContext:
    """The context of the task running in this thread; raises outside a task."""
    try:
        return _current.get()
    except LookupError:
        raise AckflowError("current_task() called outside a running task") from None


def set_current(ctx: TaskContext) -> contextvars.Token[TaskContext]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[TaskContext]) -> None:
    _current.reset(token)
