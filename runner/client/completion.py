"""Completing lazy tasks from outside: check the token, the run and the result, then send.

Everything that can be refused is refused before anything is published, with a clear
error, and then nothing has changed: a forged or altered token (`InvalidToken`), a run that
is finished or cancelled, a task that is not waiting (`CompletionRefused`), a task already
completed (`AlreadyCompleted`), a result that does not fit what the task provides or is too
large (`ValueError`, `PayloadTooLargeError`). The completion itself is a ``task.complete``
event: the engine applies it once, to the task's current attempt, and refuses it if the task
moved on meanwhile (a second completion racing the first is told it was already completed).
A task takes an outside result while its attempt is active: WAITING (it deferred) or still
SCHEDULED/RUNNING — its token exists while its body runs, and an outside system may answer
before the task's ``defer()`` is recorded; that completion is the attempt's result. Only the
attempt current when the request was checked (inside the task's own body: that body's
attempt) is completed: a retried request cannot complete (or fail) the next attempt.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from runner import protocol, states
from runner.client.info import HistoryEntry, RunInfo, who
from runner.client.tokens import InvalidToken, check_token, parse_token
from runner.config import Config
from runner.decide.events import COMPLETABLE
from runner.decide.records import TaskState
from runner.define.context import current_task
from runner.define.lazy import result_values
from runner.define.spec import TaskSpec
from runner.errors import (
    AckflowError,
    AlreadyCompleted,
    CompletionRefused,
    EncodeError,
    PayloadTooLargeError,
    RunNotFound,
    WaitTimeout,
)
from runner.protocol import Event, unpack
from runner.store import Store, keys

LIVE = (states.RUNNING, states.PAUSED)
ACTIVE = (states.SCHEDULED, states.RUNNING, states.WAITING)
INVALID = (
    "invalid completion token: its signature does not match "
    "(forged, altered, from another deployment, or for an earlier run with this id)"
)


class Sender(Protocol):
    """What completing needs of a `runner.client.Client`: its config and store, sending an
    event and waiting for what it caused, a run's status. Named here, so this module imports
    nothing of the client's and the client is the only one of the two importing the other."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    def send_and_await(self, event: Event, wait_s: float | None) -> list[HistoryEntry] | None: ...

    def status(self, run_id: str) -> RunInfo: ...


class TokenForNoRun(InvalidToken, RunNotFound):
    """A token naming a run that does not exist: as invalid as a forged one (the same words),
    and still a `RunNotFound` for callers that tell the two apart."""

    def __init__(self, run_id: str) -> None:
        RunNotFound.__init__(self, run_id)
        self.args = (INVALID,)

    def __str__(self) -> str:
        return INVALID


def complete(
    client: Sender, token: str, result: Any, error: dict[str, Any] | None, wait_s: float | None
) -> str:
    """Send the completion (``error`` set: a failure); see `runner.client.Client.complete`."""
    cfg = client.config
    run_id, task = parse_token(token)
    got = client.store.read(
        run_id, {keys.META: ["status", "created_ms"], keys.TASKS: [task], keys.SPEC: [task]}
    )
    status, created = got[keys.META]
    # The signature first: a forged token is refused alike whether or not its run exists
    # (telling them apart would let anyone list run ids). A genuine token of a run that no
    # longer exists fails the check too (its creation time is unknown): `TokenForNoRun`.
    try:
        check_token(cfg.secret, cfg.prefix, token, int(created or 0))
    except InvalidToken:
        if status is None:
            raise TokenForNoRun(run_id) from None
        raise
    if status is None:
        raise TokenForNoRun(run_id)
    run_status = status.decode()
    raw_state, raw_spec = got[keys.TASKS][0], got[keys.SPEC][0]
    if raw_spec is None:
        raise CompletionRefused(f"run {run_id} has no task {task!r}")
    st = TaskState.decode(raw_state)
    if st.status == states.SUCCESS or (
        st.status == states.FAILED and st.retry_at_ms is None and run_status not in LIVE
    ):
        raise AlreadyCompleted(run_id, task, st.status)
    if run_status not in COMPLETABLE:
        raise CompletionRefused(f"cannot complete task {task!r}: run {run_id} is {run_status}")
    if st.status not in ACTIVE:
        raise CompletionRefused(
            f"cannot complete task {task!r} of run {run_id}: it is {st.status}, not running or WAITING"
        )
    body: dict[str, Any] = {"by": who()}
    if error is not None:
        body["error"] = error
    else:
        spec = TaskSpec.from_data(unpack(raw_spec))
        values = result_values(spec.provides, spec.unpack, result)
        try:
            size = len(protocol.pack(values))
        except EncodeError as e:
            raise ValueError(f"the result cannot be carried: {e}") from None
        if size > cfg.max_payload_bytes:
            raise PayloadTooLargeError("the result", size, cfg.max_payload_bytes)
        body["values"] = values
    attempt = _own_attempt(run_id, task) or st.attempt
    event = Event(
        protocol.TASK_COMPLETE,
        f"complete:{run_id}:{task}:{attempt}:{uuid.uuid4().hex}",
        run_id,
        task,
        attempt,
        body,
        protocol.now_ms(),
    )
    try:
        entries = client.send_and_await(event, wait_s)
    except WaitTimeout:  # sent; an engine applies it when one gets to it
        return "accepted"
    if entries is None:
        return "accepted"
    if any(e.scope == task and e.old != e.new for e in entries):
        return "failed" if error is not None else "completed"
    note = " ".join(str(e.extra.get("note", "")) for e in entries)
    if "already" in note or "fenced" in note:  # another completion (or the worker) was first
        raise AlreadyCompleted(run_id, task, client.status(run_id).tasks[task].status)
    raise CompletionRefused(f"the engine refused the completion: {note}")


def _own_attempt(run_id: str, task: str) -> int:
    """The attempt of the task body calling this, if it completes itself (0 otherwise): its
    completion must never complete a later attempt, even if one started meanwhile."""
    try:
        ctx = current_task()
    except AckflowError:
        return 0
    return ctx.attempt if (ctx.run_id, ctx.task) == (run_id, task) else 0
