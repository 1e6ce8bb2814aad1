"""What a running task can know about itself, and tell: its identity, progress, cancellation."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.errors import AckflowError


@dataclass
class LiveState:
    """Shared between the task (its thread, or the worker's event loop) and the worker's
    heartbeat thread."""

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
    # Makes this attempt's completion token (lazy tasks, runner.lazy); called once, when
    # the task first asks for it: an HMAC per task that never defers is cost for nothing.
    token_maker: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    _token: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def completion_token(self) -> str:
        """The token an outside system completes this task with ("" without a secret)."""
        if not self._token:
            self._token.append(self.token_maker() if self.token_maker is not None else "")
        return self._token[0]

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

        Learnt from the worker's heartbeats, so it can lag by a heartbeat interval. An
        ``async def`` task is also cancelled then (`asyncio.CancelledError` at its ``await``).
        """
        return self.live.cancelled or self.live.fenced


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("ackflow_task")


def current_task() -> TaskContext:
    """The context of the task running in this thread or asyncio task (a context variable:
    each async task has its own, and the asyncio tasks it starts inherit it); raises
    outside a task."""
    try:
        return _current.get()
    except LookupError:
        raise AckflowError("current_task() called outside a running task") from None


def set_current(ctx: TaskContext) -> contextvars.Token[TaskContext]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[TaskContext]) -> None:
    _current.reset(token)
