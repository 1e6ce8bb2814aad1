"""What a running task can know about itself: its run, name, attempt and idempotency key."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from runner.errors import AckflowError


@dataclass(frozen=True)
class TaskContext:
    run_id: str
    task: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """The same string for every execution of this attempt (G2): guard side effects with it."""
        return f"{self.run_id}:{self.task}:{self.attempt}"


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
