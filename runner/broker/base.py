"""The broker's contract, as the engine and the workers see it.

A broker carries opaque msgpack bodies between named logical queues: ``engine`` for events,
``task.<queue>`` for task requests, ``dead`` for dead letters (and ``dead.watch``, a copy of
them for the engines). Two implementations:
`runner.broker.kombu.KombuBroker` (RabbitMQ; kombu is imported in runner/broker/kombu*.py only) and
`runner.broker.local.LocalBroker` (in-process, for local mode).

Rules both follow: manual acknowledgement; `publish` returns only once the broker has
confirmed every message (or raises `PublishError`, or `BrokerUnavailable` once a bounded
recovery from nacks or confirm timeouts has failed), and `send` + `confirm` split that in two
so a caller can pipeline the confirms of many messages; a message that cannot be handled is
dead-lettered with a reason, never dropped.

`DeadLetters` is what the operator surfaces (CLI, HTTP API, dashboard) need of a broker to
list, show, replay and purge dead letters, so they test for the capability instead of for a
concrete adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from runner import protocol
from runner.errors import AckflowError, DecodeError

ENGINE_QUEUE = "engine"
DEAD_QUEUE = "dead"
# Gets a copy of every dead letter (on RabbitMQ: bound to the exchange with the dead queue's
# routing key), consumed by the engines: a task request that RabbitMQ itself dead-lettered
# (its delivery limit) must end its attempt. The dead queue keeps its copy for the operator.
DEAD_WATCH_QUEUE = "dead.watch"

# Headers carried by a dead letter.
H_REASON = "x-ackflow-reason"
H_QUEUE = "x-ackflow-queue"
H_COUNT = "x-ackflow-delivery-count"


def task_queue(name: str) -> str:
    return f"task.{name}"


def header_count(value: Any) -> int:
    """A delivery count read from a message header: a non-negative int, else 0 (unknown).

    Headers are the publisher's to write — RabbitMQ sets ``x-delivery-count`` only on a
    quorum queue's redeliveries, and dead-letter headers are whatever reached the dead queue —
    so reading one never raises: a consumer that did would die on the message, and so would
    every one the broker hands it to next (H1).
    """
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


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

    def requeue(self, delivery: Delivery) -> None:
        """Hand an unsettled delivery back to its queue at once (it comes again, marked
        redelivered and counted): for a failure that leaves the connection up, such as
        publishes that stayed unconfirmed; a closed connection hands it back by itself."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to the dead queue with the reason, then acknowledge it."""
        ...

    def close(self) -> None: ...

    # True when `wakeup` interrupts a `poll` from another thread; otherwise a caller with
    # work in flight polls with short timeouts.
    can_wake: bool

    def wakeup(self) -> None:
        """Make a concurrent `poll` return early (thread-safe); one that comes before the
        next poll makes that poll return at once (a wakeup is never lost between a caller's
        last look at its work and its poll). May do nothing when `can_wake` is False."""
        ...


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead queue, with why it is there (`runner.broker.dead_letters` reads
    the headers either writer leaves: ours or RabbitMQ's delivery limit)."""

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


class DeadLetterNotFound(AckflowError):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"no dead letter with id {message_id!r} (see 'ackflow dlq list')")


@runtime_checkable
class DeadLetters(Protocol):
    """The dead queue as an operator sees it. A broker offers it when it keeps dead letters
    (test with ``isinstance(broker, DeadLetters)``, never for a concrete adapter). Use a
    broker that is not consuming: reading the queue must not disturb in-flight deliveries."""

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first; they stay in the queue."""
        ...

    def show_dead(self, message_id: str) -> DeadLetter:
        """The dead letter with this id (`DeadLetterNotFound` if none); it stays in the queue."""
        ...

    def replay_dead(self, message_id: str) -> DeadLetter:
        """Publish it (confirmed) back to the queue it came from, then remove it from the
        dead queue: a crash in between leaves a copy in both, never in neither."""
        ...

    def purge_dead(self) -> int:
        """Drop every dead letter; return how many."""
        ...


@dataclass(frozen=True)
class QueueStats:
    """A queue as the broker counts it: messages ready for delivery, and consumers."""

    ready: int
    consumers: int


@runtime_checkable
class QueueInfo(Protocol):
    """What ``ackflow topology`` and ``ackflow queues`` show of a broker's queues; a broker with
    real queues offers it."""

    def queue_stats(self, logical: str) -> QueueStats | None:
        """Ready messages and consumers of a queue; None if the queue does not exist."""
        ...

    def physical(self, logical: str) -> str:
        """The queue's name on the broker (``engine`` -> ``<prefix>.engine``)."""
        ...

    def depth(self, logical: str) -> int:
        """Messages ready in the queue; raises if the queue does not exist."""
        ...

    def queue_arguments(self, logical: str) -> dict[str, Any]:
        """The arguments the queue is declared with (type, limits, dead-lettering)."""
        ...
