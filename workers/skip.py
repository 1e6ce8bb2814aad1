"""Which task requests a worker must not run: those of a cancelled or vanished run, of an
attempt no longer current, and a failing run's requests not yet started. Checked in the task's
thread (or on the event loop, for an async task) just before the body would run, from the
run's stored state (`skip_reason` decides, `superseded` reads the store and says what to
report). A poison request is refused as the worker takes it (`poisoned`).
"""

from __future__ import annotations

import logging
from typing import Literal

from runner import protocol
from runner.broker import ENGINE_QUEUE, Broker, Delivery, Outgoing
from runner.decide.records import TaskState
from runner.errors import BrokerError, StoreError
from runner.protocol import Event, TaskRequest
from runner.states import CANCELLED, FAILED, PAUSED, REVERTED, REVERTING, RUNNING, SCHEDULED
from runner.store import Store, keys
from workers.execute import not_started, poison_failure

log = logging.getLogger("ackflow.worker")

SCHEDULED_OR_RUNNING = (SCHEDULED, RUNNING)
FAILING = (REVERTING, FAILED, REVERTED)  # a failed run's queued requests must not start
PAUSED_REASON = "the run is paused"


def poisoned(broker: Broker, d: Delivery, req: TaskRequest, delivery_limit: int, worker: str) -> bool:
    """Whether ``req`` is a request delivered ``delivery_limit`` times, each ending with its
    worker gone (G5). Then it is not run again: its attempt fails with the reason and it goes
    to the dead queue."""
    if d.delivery_count < delivery_limit - 1:
        return False
    reason = (
        f"poison: task request delivered {d.delivery_count + 1} times and its worker died "
        f"each time (limit {delivery_limit})"
    )
    log.error("%s: %s", req.id, reason)
    failed = poison_failure(req, worker, reason)
    try:
        broker.publish([Outgoing(ENGINE_QUEUE, failed.id, protocol.encode(failed))])
        broker.dead_letter(d, reason)
    except BrokerError as e:
        log.error("could not dead-letter poison request %s (%s)", req.id, e)
    return True


def skip_reason(
    req: TaskRequest, delivery_count: int, status: bytes | None, raw_state: bytes | None
) -> tuple[str, bool]:
    """Why a worker taking ``req`` must not run it ("" to run it), and whether to tell the
    engine (the run is paused: the engine holds the task until the resume; the run is
    failing: the engine waits for the task to settle before it reverts the task's
    predecessors, so it must learn the task ended without effect).

    Skipped: a request of a cancelled or vanished run (the engine told if its task is still
    active at this attempt: it was running when the cancel came), of an attempt no longer current, and
    the first delivery of a request whose run is paused or failing (REVERTING, FAILED,
    REVERTED) — a body started then could read inputs already reverted. A redelivery of such
    a request runs: an earlier delivery may have started the body (its result is then
    recorded, or reverted).
    """
    if status is None:
        return "the run no longer exists", False
    st = TaskState.decode(raw_state) if raw_state is not None else None
    want = (REVERTING,) if req.mode == protocol.MODE_REVERT else SCHEDULED_OR_RUNNING
    if status == CANCELLED.encode():
        # A task still active at this attempt (it was running when the run was cancelled,
        # and its worker died): the engine must learn it ended, or it stays RUNNING for ever.
        return "the run was cancelled", st is not None and st.attempt == req.attempt and st.status in want
    if st is not None:
        if st.attempt != req.attempt or st.status not in want:
            return f"the task is {st.status} at attempt {st.attempt}", False
    run_status = status.decode()
    if (
        req.mode == protocol.MODE_RUN
        and run_status == PAUSED
        and st is not None
        and st.status == SCHEDULED
        and not delivery_count
    ):  # queued before the pause: the engine holds it until the resume
        return PAUSED_REASON, True
    if (
        req.mode == protocol.MODE_RUN
        and run_status in FAILING
        and st is not None
        and st.status == SCHEDULED
        and not delivery_count
    ):
        return f"the run is {run_status}", True
    return "", False


def superseded(
    store: Store | None, req: TaskRequest, delivery_count: int, worker: str
) -> Event | None | Literal[False]:
    """Whether to skip the request (see `skip_reason`): None to run it, else what to
    report — the not-started event of a failing run's request, or False for nothing.

    One store read; without a store, or if it cannot answer, the task runs (its result is
    fenced by the engine if it should not have).
    """
    if store is None:
        return None
    try:
        got = store.read(req.run_id, {keys.META: ["status"], keys.TASKS: [req.task]})
    except StoreError:
        return None
    reason, report = skip_reason(req, delivery_count, got[keys.META][0], got[keys.TASKS][0])
    if not reason:
        return None
    log.info("skipping %s: %s", req.id, reason)
    return not_started(req, worker, reason, paused=reason == PAUSED_REASON) if report else False
