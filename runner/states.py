"""The run and task state machines, kept as data (DESIGN §6).

Every transition the engine makes is checked against these tables; an illegal one is a bug
and raises `IllegalTransition` rather than corrupting a run.
"""

from __future__ import annotations

from runner.errors import AckflowError

# --- run -------------------------------------------------------------------------------
PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
REVERTING = "REVERTING"
REVERTED = "REVERTED"
PAUSED = "PAUSED"
CANCELLED = "CANCELLED"

# --- task (PENDING, RUNNING, SUCCESS, FAILED, REVERTING, REVERTED shared with runs) ---------
SCHEDULED = "SCHEDULED"
WAITING = "WAITING"
SKIPPED = "SKIPPED"

RUN_STATES = (PENDING, RUNNING, SUCCESS, FAILED, REVERTING, REVERTED, PAUSED, CANCELLED)
TASK_STATES = (PENDING, SCHEDULED, RUNNING, WAITING, SUCCESS, FAILED, REVERTING, REVERTED, SKIPPED)

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCESS, FAILED, REVERTING, PAUSED, CANCELLED}),
    # A paused run still records what its running tasks do: their failure fails it, the
    # last one's success completes it.
    PAUSED: frozenset({RUNNING, CANCELLED, FAILED, REVERTING, SUCCESS}),
    REVERTING: frozenset({REVERTED, FAILED}),
    FAILED: frozenset({RUNNING}),  # an explicit retry of a failed run
    SUCCESS: frozenset(),
    REVERTED: frozenset(),
    CANCELLED: frozenset(),
}

TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({SCHEDULED, SKIPPED}),
    # A result may overtake the worker's best-effort "started" event, so a scheduled task
    # can finish without ever being seen RUNNING.
    # A request that a worker took while its run was paused goes back, unstarted, to wait
    # for the resume (PENDING).
    SCHEDULED: frozenset({RUNNING, SUCCESS, FAILED, SKIPPED, WAITING, PENDING}),
    # A map node stopped by its run's failure (RUNNING, elements left unstarted) is reverted
    # too: its handler runs for the elements that succeeded.
    RUNNING: frozenset({SUCCESS, FAILED, WAITING, REVERTING}),
    WAITING: frozenset({SUCCESS, FAILED, SKIPPED}),  # SKIPPED: its run was cancelled
    # retry: a new attempt; or compensation of a failed body (a handler taking ``failure``)
    FAILED: frozenset({SCHEDULED, REVERTING}),
    SUCCESS: frozenset({REVERTING}),
    REVERTING: frozenset({REVERTED, FAILED}),
    REVERTED: frozenset(),
    SKIPPED: frozenset(),
}

RUN_TERMINAL = frozenset({SUCCESS, FAILED, REVERTED, CANCELLED})

# --- run control: the run statuses each operator action applies to ----------------------------
# One table for all three who need it: the client refuses up front, the engine ignores a control
# event that arrives too late (with a note in the history), the dashboard disables the button.
# A run with no stored status yet (its submit not applied) is PENDING.
CONTROL_ALLOWED: dict[str, tuple[str, ...]] = {
    "cancel": (PENDING, RUNNING, PAUSED),
    "pause": (RUNNING,),
    "resume": (PAUSED,),
    "retry": (FAILED,),
}


def control_allowed(action: str, run_status: str | None) -> bool:
    """Whether ``action`` (a key of `CONTROL_ALLOWED`) applies to a run in ``run_status``."""
    return (run_status or PENDING) in CONTROL_ALLOWED[action]


TASK_ACTIVE = frozenset({SCHEDULED, RUNNING, WAITING})


class IllegalTransition(AckflowError):
    """A state change that the state machine does not allow."""

    def __init__(self, what: str, old: str, new: str) -> None:
        self.what, self.old, self.new = what, old, new
        super().__init__(f"illegal {what} transition {old} -> {new}")


def check_run(old: str, new: str) -> None:
    if new not in RUN_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition("run", old, new)


def check_task(old: str, new: str) -> None:
    if new not in TASK_TRANSITIONS.get(old, frozenset()):
        raise IllegalTransition("task", old, new)
