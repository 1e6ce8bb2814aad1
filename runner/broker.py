"""The broker's contract, as the engine and the workers see it.

A broker carries opaque msgpack bodies between named logical queues: ``engine`` for events,
``task.<queue>`` for task requests, ``dead`` for dead letters. Two implementations:
`runner.kombu_broker.KombuBroker` (RabbitMQ, the only module that imports kombu) and
`runner.local_broker.LocalBroker` (in-process, for local mode).

Rules both follow: manual acknowledgement; `publish` returns only once the broker has
confirmed every message (or raises `PublishError`), and `send` + `confirm` split that in two
so a caller can pipeline the confirms of many messages; a message that cannot be handled is
dead-lettered with a reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ENGINE_QUEUE = "engine"
DEAD_QUEUE = "dead"

# Headers carried by a dead letter.
H_REASON = "x-ackflow-reason"
H_QUEUE = "x-ackflow-queue"
H_COUNT = "x-ackflow-delivery-count"


def task_queue(name: str) -> str:
    return f"task.{name}"


@dataclass(frozen=True)
class Outgoing:
    """A message to publish: routed by its logical queue name, deduplicated by its id."""

    routing_key: str
    message_id: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Delivery:
    """A received message, to be acknowledged or dead-lettered exactly once."""

    body: bytes
    queue: str
    content_type: str
    message_id: str | None
    redelivered: bool
    delivery_count: int  # deliveries before this one, as the broker counts them
    headers: dict[str, Any]
    handle: Any = field(repr=False, default=None)  # broker-specific: tag and connection epoch


class Broker(Protocol):
    def declare(self, queues: Sequence[str] = ()) -> None:
        """Declare the exchange, the engine and dead queues, and these extra queues."""
        ...

    def consume(self, queues: Sequence[str], prefetch: int) -> None:
        """Start consuming these queues, at most ``prefetch`` unacknowledged per queue."""
        ...

    def poll(self, timeout_s: float) -> list[Delivery]:
        """Wait up to ``timeout_s`` for deliveries, servicing heartbeats and reconnecting."""
        ...

    def keepalive(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` servicing heartbeats; arrivals stay buffered for `poll`."""
        ...

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send these messages and wait until the broker has confirmed them all."""
        ...

    def send(self, messages: Sequence[Outgoing]) -> None:
        """Send without waiting for the confirms (consumers may receive them at once)."""
        ...

    def confirm(self) -> None:
        """Wait for the confirms of everything sent since the last call; `PublishError` if
        any message was refused or is in doubt (then none may be taken for published)."""
        ...

    def ack(self, delivery: Delivery) -> None: ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to the dead queue with the reason, then acknowledge it."""
        ...

    def close(self) -> None: ...

    # True when `wakeup` interrupts a `poll` from another thread; otherwise a caller with
    # work in flight polls with short timeouts.
    can_wake: bool

    def wakeup(self) -> None:
        """Make a concurrent `poll` return early (thread-safe); may do nothing."""
        ...
