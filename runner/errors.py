"""Every exception ackflow raises derives from `AckflowError`.

Adapters translate kombu and redis errors into this tree with ``raise ... from e``, so a
caller can catch "anything from ackflow" without importing either library.
"""

from __future__ import annotations


class AckflowError(Exception):
    """Root of every error raised by ackflow."""


class ConfigError(AckflowError):
    """A setting is missing or has an invalid value."""


# --- flow definition -------------------------------------------------------------------


class FlowDefinitionError(AckflowError):
    """A flow or task definition is invalid; raised before anything is enqueued."""


class CycleError(FlowDefinitionError):
    """The flow's dependency graph has a cycle."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("flow has a cycle: " + " -> ".join(cycle))


class DuplicateTaskError(FlowDefinitionError):
    """Two tasks in one flow share a name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"two tasks in the flow are named {name!r}; give one a distinct name with {name}.named('other')"
        )


class DuplicateRegistrationError(FlowDefinitionError):
    """Two different functions are registered as tasks under one name."""

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name, self.first, self.second = name, first, second
        super().__init__(
            f"task name {name!r} is registered twice: by {first} and by {second}; "
            "rename one of the functions or pass @task(name=...) to tell them apart"
        )


class MissingInputError(FlowDefinitionError):
    """A task requires a value that no task provides and the run's inputs lack."""

    def __init__(self, task: str, name: str) -> None:
        self.task = task
        self.name = name
        super().__init__(f"task {task!r} requires {name!r}, which no task provides and the run's inputs lack")


class UnknownInputError(FlowDefinitionError):
    """A run was given an input that none of its tasks takes (a typo, most often)."""

    def __init__(self, name: str, close: list[str], known: list[str]) -> None:
        self.name = name
        if close:
            hint = f"; did you mean {close[0]!r}?"
        else:
            hint = f"; the flow's inputs are: {', '.join(known)}" if known else "; the flow takes no inputs"
        super().__init__(f"unknown input {name!r}: no task of the flow takes it{hint}")


class InputTypeError(FlowDefinitionError):
    """A run input's value does not fit the type hint of a task parameter it is passed to."""

    def __init__(self, name: str, task: str, param: str, kind: str, value: object) -> None:
        self.name = name
        self.task = task
        self.param = param
        self.kind = kind
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        want = f"{kind[:-1]} or None" if kind.endswith("?") else kind
        super().__init__(
            f"input {name!r} must be {want} (task {task!r}, parameter {param!r}), "
            f"not {type(value).__name__}: {shown}"
        )


class UnknownFlowError(FlowDefinitionError):
    """A flow submitted by name is not in the flow registry (or not at that version)."""

    def __init__(self, name: str, known: list[str], version: str | None = None) -> None:
        self.name = name
        if version is not None:
            super().__init__(
                f"flow {name!r} has no registered version {version!r}; versions: {', '.join(known) or 'none'}"
            )
            return
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else f"; registered flows: {', '.join(sorted(known)[:10]) or 'none'}"
        )
        super().__init__(
            f"no flow named {name!r} is registered (workers register their modules' flows; so does "
            f"`ackflow flows register MODULE`){hint}"
        )


class UnknownTaskError(FlowDefinitionError):
    """A flow names a task that is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        import difflib

        self.name = name
        hint = ", ".join(sorted(known)[:10]) or "none"
        close = difflib.get_close_matches(name, known, n=1)
        mean = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown task {name!r}{mean}; registered tasks: {hint}")


class ScheduleError(AckflowError):
    """A schedule's definition is refused: a bad cron expression, time zone, duration, time or
    policy (the message says which and why)."""


class ScheduleNotFound(AckflowError):
    """No schedule has that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")


class ScheduleConflict(AckflowError):
    """A schedule of that name exists already (delete it first, or pick another name)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a schedule named {name!r} exists already (delete it first, or use another name)")


class PayloadTooLargeError(AckflowError):
    """A message or value is larger than the configured limit."""

    def __init__(self, what: str, size_bytes: int, limit_bytes: int) -> None:
        self.what = what
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"{what} is {size_bytes} bytes, over the limit of {limit_bytes} bytes (ACKFLOW_MAX_PAYLOAD_BYTES)"
        )


# --- messages --------------------------------------------------------------------------


class DecodeError(AckflowError):
    """A message body is not a valid ackflow message; it is dead-lettered with this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class EncodeError(AckflowError):
    """A value cannot be encoded as msgpack."""


# --- services --------------------------------------------------------------------------


class BrokerError(AckflowError):
    """The message broker failed or refused an operation."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (after bounded retries)."""


class PublishError(BrokerError):
    """The broker did not confirm a publish (nack, unroutable, or timeout)."""


class StoreError(AckflowError):
    """The state store failed."""


class StoreUnavailable(StoreError):
    """The state store cannot be reached."""


class StoreNotDurable(StoreError):
    """The state store may lose acknowledged state, and ``ACKFLOW_REQUIRE_DURABLE_STORE``
    is set (or its durability could not be checked): refuse rather than risk runs."""


# --- runs ------------------------------------------------------------------------------


class RunError(AckflowError):
    """An operation on a run was refused."""


class RunNotFound(RunError):
    """No run has this id (it never existed, or it expired after its retention)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class RunLost(RunNotFound):
    """The run existed and was active, and its state vanished from Redis (a flush, a restart
    without persistence, a failover to an empty replica, an eviction): its work is lost.

    A `RunNotFound`, so callers that only know "not found" still stop, but never the same
    message (nor, in the CLI, exit code) as an id that was never submitted or expired.
    """

    def __init__(self, run_id: str, detail: str = "") -> None:
        super().__init__(run_id)
        self.detail = detail
        self.args = (
            f"run {run_id!r} was lost: its state vanished from Redis while it was active "
            f"(a flush, a restart without persistence, a failover or an eviction){detail}; "
            "submit it again",
        )


class RunConflictError(RunError):
    """A run id was reused with a different flow or inputs."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} already exists with a different flow or inputs; submit with another run id"
        )


class WaitTimeout(RunError):
    """A run did not finish within the time a caller was willing to wait."""

    def __init__(self, run_id: str, timeout_s: float, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id!r} still {status} after {timeout_s:g} s")


class RunStateError(RunError):
    """A control request the run's current status does not allow (e.g. pausing a finished run)."""

    def __init__(self, run_id: str, action: str, status: str, allowed: str) -> None:
        self.run_id, self.action, self.status = run_id, action, status
        super().__init__(f"cannot {action} run {run_id}: it is {status} (only {allowed} runs can be)")


class AlreadyCompleted(RunError):
    """The task a completion token names was already completed: nothing changed."""

    def __init__(self, run_id: str, task: str, status: str) -> None:
        self.run_id, self.task, self.status = run_id, task, status
        super().__init__(f"task {task!r} of run {run_id} is already completed ({status})")


class CompletionRefused(RunError):
    """A completion the run's or task's state does not allow: nothing changed."""
