"""Dead letters: list, inspect, replay and purge what ended up in ``<prefix>.dead``.

A message reaches the dead queue because an engine or worker rejected it with a reason
(malformed, poison) or because RabbitMQ's delivery limit moved it there; both are shown with
the reason, the queue it came from and its delivery count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner import protocol
from runner.broker import DEAD_QUEUE, H_COUNT, H_QUEUE, H_REASON, Delivery, Outgoing
from runner.broker.kombu import KombuBroker
from runner.errors import AckflowError, DecodeError


class DeadLetterNotFound(AckflowError):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"no dead letter with id {message_id!r} (see 'ackflow dlq list')")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    reason: str
    queue: str  # the logical queue it came from: "engine" or "task.<name>"
    delivery_count: int
    body: bytes
    headers: dict[str, Any]

    def describe_body(self) -> str:
        try:
            return repr(protocol.decode(self.body))
        except DecodeError as e:
            return f"<{len(self.body)} bytes, undecodable: {e.reason}>"


def _logical(broker: KombuBroker, physical: str) -> str:
    prefix = broker.physical("")
    return physical[len(prefix) :] if physical.startswith(prefix) else physical


def to_dead_letter(broker: KombuBroker, d: Delivery) -> DeadLetter:
    h = d.headers
    if H_REASON in h:
        reason, queue, count = str(h[H_REASON]), str(h[H_QUEUE]), int(h.get(H_COUNT) or 0)
    else:  # dead-lettered by RabbitMQ itself (delivery limit): read x-death
        deaths = h.get("x-death") or [{}]
        first = deaths[0]
        reason = f"broker: {first.get('reason', 'unknown')}"
        queue = _logical(broker, str(h.get("x-first-death-queue") or first.get("queue", "?")))
        count = int(h.get("x-delivery-count") or first.get("count") or 0)
    return DeadLetter(d.message_id or "?", reason, queue, count, d.body, dict(h))


def list_dead(broker: KombuBroker, limit: int = 100) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, oldest first; they stay in the queue."""
    out: list[tuple[Delivery, DeadLetter]] = []
    try:
        while len(out) < limit:
            d = broker.get(DEAD_QUEUE)
            if d is None:
                break
            out.append((d, to_dead_letter(broker, d)))
    finally:
        broker.close()  # unacknowledged: the broker puts every one back
    return [dl for _, dl in out]


def _find(broker: KombuBroker, message_id: str) -> tuple[Delivery, DeadLetter] | None:
    while True:
        d = broker.get(DEAD_QUEUE)
        if d is None:
            return None
        dl = to_dead_letter(broker, d)
        if dl.id == message_id:
            return d, dl


def show(broker: KombuBroker, message_id: str) -> DeadLetter:
    try:
        found = _find(broker, message_id)
    finally:
        broker.close()
    if found is None:
        raise DeadLetterNotFound(message_id)
    return found[1]


def replay(broker: KombuBroker, message_id: str) -> DeadLetter:
    """Publish the dead letter back to the queue it came from, then remove it from the dead queue."""
    try:
        found = _find(broker, message_id)
        if found is None:
            raise DeadLetterNotFound(message_id)
        d, dl = found
        headers = {k: v for k, v in dl.headers.items() if not k.startswith("x-")}
        broker.publish([Outgoing(dl.queue, dl.id, dl.body, headers)])
        broker.ack(d)
        return dl
    finally:
        broker.close()


def purge(broker: KombuBroker) -> int:
    try:
        return broker.purge(DEAD_QUEUE)
    finally:
        broker.close()
