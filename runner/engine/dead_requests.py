"""Task requests that RabbitMQ itself dead-lettered: each ends its attempt with the reason.

A quorum task queue has ``x-delivery-limit`` as a backstop: a request put back that often
(connection churn returns prefetched requests, each time counted) is moved to the dead queue
by the broker, and no worker will ever report on it. Every dead letter is also copied to the
``dead.watch`` queue the engines consume; for a copy that is such a request, the engine
publishes the attempt's ``task.failed`` event and only then acknowledges the copy.

Exactly once: the event has the attempt's result id (`protocol.result_id`), the id of every
outcome of that attempt. A copy handled twice (an engine died before its ack) publishes the
same event again, applied once; a worker result of the same attempt that got through after
all (it ran, but its ack was lost) has that id too, so only the first of the two applies.
Copies of our own dead letters (they carry ``x-ackflow-reason``: an engine or a worker
settled that case already) and of events the broker dead-lettered are just acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from runner import caps, logs, protocol
from runner.broker import ENGINE_QUEUE, H_REASON, Broker, Delivery, Outgoing, from_headers
from runner.errors import BrokerError, DecodeError
from runner.protocol import CREATED_FIELD, Event, TaskRequest

log = logging.getLogger("ackflow.engine")

DEAD_LETTERED = "DeadLettered"  # the error type of an attempt whose request the broker dropped


def failure_of(copy: Delivery, prefix: str) -> Event | None:
    """The event that ends the attempt of a task request the broker dead-lettered, or None
    when the copy is anything else (ours, an event, undecodable)."""
    if H_REASON in copy.headers or "x-death" not in copy.headers:
        return None
    dl = from_headers(copy.message_id, copy.body, copy.headers, f"{prefix}.")
    if not dl.queue.startswith("task."):
        return None
    try:
        req = protocol.decode_delivery(copy.content_type, copy.body, TaskRequest, dl.queue)
    except DecodeError:
        return None
    message = (
        f"dead-lettered by RabbitMQ ({dl.reason}) from {dl.queue} after {dl.delivery_count} "
        "deliveries that no worker settled (the queue's x-delivery-limit): the attempt ends here"
    )
    error = caps.cap_error({"type": DEAD_LETTERED, "message": message, "types": [DEAD_LETTERED]})
    revert = req.mode == protocol.MODE_REVERT
    body: dict[str, object] = {"worker": "broker", "error": error}
    if req.run_created:
        body[CREATED_FIELD] = req.run_created
    return Event(
        kind=protocol.TASK_REVERT_FAILED if revert else protocol.TASK_FAILED,
        id=(protocol.revert_result_id if revert else protocol.result_id)(req.run_id, req.task, req.attempt),
        run_id=req.run_id,
        task=req.task,
        attempt=req.attempt,
        at_ms=protocol.now_ms(),
        body=body,
    )


def settle(
    copies: list[Delivery], broker: Broker, publish: Callable[[list[Outgoing]], None], prefix: str
) -> bool:
    """End the attempts of the task requests these copies are: their failure events are
    published (confirmed, by ``publish``) before the copies are acknowledged; False on a
    broker error (the copies are handed back, to come again)."""
    failures = {}
    for d in copies:
        try:
            ev = failure_of(d, prefix)
        except Exception:  # a copy nobody can read costs a log line, not the engine (H1)
            log.exception("ignoring dead-letter copy %s: it could not be read", d.message_id)
            continue
        if ev is not None:
            with logs.about(ev.run_id, ev.task, ev.attempt):
                log.error("task request %s was dead-lettered by the broker; its attempt fails", d.message_id)
            failures[ev.id] = ev
    try:
        if failures:
            publish([Outgoing(ENGINE_QUEUE, i, protocol.encode(ev)) for i, ev in failures.items()])
    except BrokerError as e:
        log.warning("could not report dead-lettered task requests (%s); they will come again", e)
        for d in copies:
            broker.requeue(d)
        return False
    for d in copies:
        broker.ack(d)
    return True
