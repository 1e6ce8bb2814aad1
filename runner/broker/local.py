"""The in-process transport for local mode: thread-safe queues with manual acknowledgement.

Unlike kombu's ``memory://`` it wakes consumers at once (no polling interval), puts a
consumer's unacknowledged messages back when it closes, and keeps dead letters with their
reason. Nothing survives the process, by design.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from runner.broker.base import (
    DEAD_QUEUE,
    ENGINE_QUEUE,
    H_COUNT,
    H_QUEUE,
    H_REASON,
    DeadLetter,
    DeadLetterNotFound,
    Delivery,
    Outgoing,
    QueueStats,
)
from runner.broker.dead_letters import from_headers, replay_message


class LocalHub:
    """The queues themselves, shared by every `LocalBroker` of one process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while the queues change
        self.queues: dict[str, deque[tuple[Outgoing, int]]] = {ENGINE_QUEUE: deque(), DEAD_QUEUE: deque()}
        self.consumers: list[LocalBroker] = []  # woken only by what they consume
        self._consumers_of: dict[str, list[LocalBroker]] = {}  # by queue (cleared on changes)

    def notify(self, queue: str) -> None:
        """Wake the consumers of ``queue`` (the caller holds the lock)."""
        found = self._consumers_of.get(queue)
        if found is None:
            found = self._consumers_of[queue] = [c for c in self.consumers if c.consumes(queue)]
        for c in found:
            c.cond.notify()

    def depth(self, queue: str) -> int:
        with self.lock:
            return len(self.queues.get(queue, ()))

    def connect(self) -> LocalBroker:
        return LocalBroker(self)


class LocalBroker:
    """One consumer's view of a `LocalHub`; implements `runner.broker.Broker` and
    `runner.broker.DeadLetters`."""

    _tags = itertools.count(1)
    can_wake = True

    def __init__(self, hub: LocalHub) -> None:
        self._hub = hub
        self.cond = threading.Condition(hub.lock)
        self._consuming: list[str] = []
        self._prefetch = 1
        self._unacked: dict[int, tuple[str, Outgoing, int]] = {}
        self._woken = False  # a `wakeup` not yet seen by a `poll`: the next one returns at once
        self._matched: list[tuple[str, deque[tuple[Outgoing, int]]]] = []  # see `_queues`
        self._matched_of: tuple[int, list[str]] | None = None

    def physical(self, logical: str) -> str:
        return logical  # an in-process queue has no other name

    def queue_arguments(self, logical: str) -> dict[str, Any]:
        return {}

    def depth(self, logical: str) -> int:
        return self._hub.depth(logical)

    def queue_stats(self, logical: str) -> QueueStats | None:
        with self._hub.lock:
            if logical not in self._hub.queues:
                return None
            consumers = sum(1 for c in self._hub.consumers if c.consumes(logical))
            return QueueStats(len(self._hub.queues[logical]), consumers)

    def declare(self, queues: Sequence[str] = ()) -> None:
        with self._hub.lock:
            for q in queues:
                self._hub.queues.setdefault(q, deque())

    def consume(self, queues: Sequence[str], prefetch: int) -> None:
        self.declare([q for q in queues if not q.endswith("*")])
        with self._hub.lock:
            self._consuming = list(queues)
            self._prefetch = prefetch
            if self not in self._hub.consumers:
                self._hub.consumers.append(self)
            self._hub._consumers_of.clear()

    def consumes(self, queue: str) -> bool:
        return any(queue == q or (q.endswith("*") and queue.startswith(q[:-1])) for q in self._consuming)

    def _queues(self) -> list[tuple[str, deque[tuple[Outgoing, int]]]]:
        """The consumed queues, with their deques; a name ending in ``*`` matches every queue
        with that prefix. Recomputed only when the hub has queues it had not (queues are
        never removed, so their number tells), or what is consumed changed."""
        queues = self._hub.queues
        if self._matched_of != (len(queues), self._consuming):
            out = []
            for q in self._consuming:
                if q.endswith("*"):
                    out += [(name, dq) for name, dq in queues.items() if name.startswith(q[:-1])]
                else:
                    out.append((q, queues[q]))
            self._matched, self._matched_of = out, (len(queues), self._consuming)
        return self._matched

    def _take(self) -> list[Delivery]:
        out: list[Delivery] = []
        unacked = self._unacked
        for q, dq in self._queues():
            while dq and len(unacked) < self._prefetch:
                msg, count = dq.popleft()
                tag = next(self._tags)
                unacked[tag] = (q, msg, count)
                out.append(
                    Delivery(
                        body=msg.body,
                        queue=q,
                        content_type="application/x-msgpack",
                        message_id=msg.message_id,
                        redelivered=count > 0,
                        delivery_count=count,
                        headers=dict(msg.headers),
                        handle=tag,
                    )
                )
        return out

    def poll(self, timeout_s: float) -> list[Delivery]:
        with self._hub.lock:
            got = self._take()
            if not (got or timeout_s <= 0 or self._woken):
                self.cond.wait(timeout_s)
                got = self._take()
            self._woken = False
            return got

    def keepalive(self, timeout_s: float) -> None:
        with self._hub.lock:
            if not self._woken:
                self.cond.wait(timeout_s)
            self._woken = False

    def publish(self, messages: Sequence[Outgoing]) -> None:
        with self._hub.lock:
            for m in messages:  # the publisher declares what it publishes to, as on RabbitMQ
                self._hub.queues.setdefault(m.routing_key, deque()).append((m, 0))
            for q in {m.routing_key for m in messages}:
                self._hub.notify(q)

    def send(self, messages: Sequence[Outgoing]) -> None:
        self.publish(messages)  # in-process: delivered, hence confirmed, at once

    def confirm(self) -> None:
        pass

    def ack(self, delivery: Delivery) -> None:
        with self._hub.lock:
            self._unacked.pop(delivery.handle, None)

    def requeue(self, delivery: Delivery) -> None:
        with self._hub.lock:
            held = self._unacked.pop(delivery.handle, None)
            if held is not None:
                q, msg, count = held
                self._hub.queues[q].appendleft((msg, count + 1))
                self._hub.notify(q)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._hub.lock:
            self._unacked.pop(delivery.handle, None)
            headers = dict(delivery.headers)
            headers.update({H_REASON: reason, H_QUEUE: delivery.queue, H_COUNT: delivery.delivery_count})
            dead = Outgoing(DEAD_QUEUE, delivery.message_id or "", delivery.body, headers)
            self._hub.queues[DEAD_QUEUE].append((dead, 0))
            self._hub.notify(DEAD_QUEUE)

    def wakeup(self) -> None:
        """Sticky, as a byte in the kombu broker's pipe: a wakeup that comes before the
        `poll` (a task that finished while the worker's loop was between looking for results
        and waiting) ends that poll at once instead of being lost."""
        with self._hub.lock:
            self._woken = True
            self.cond.notify_all()

    def close(self) -> None:
        """Put unacknowledged messages back, as a broker does when a consumer goes away."""
        with self._hub.lock:
            for q, msg, count in self._unacked.values():
                self._hub.queues[q].appendleft((msg, count + 1))
                self._hub.notify(q)
            self._unacked.clear()
            if self in self._hub.consumers:
                self._hub.consumers.remove(self)
            self._hub._consumers_of.clear()

    # --- DeadLetters (the hub's dead queue; the same letters every LocalBroker sees) -------

    def _all_dead(self) -> list[DeadLetter]:
        with self._hub.lock:
            dead = list(self._hub.queues[DEAD_QUEUE])
        return [from_headers(m.message_id, m.body, m.headers) for m, _ in dead]

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        return self._all_dead()[: max(limit, 0)]

    def show_dead(self, message_id: str) -> DeadLetter:
        for dl in self._all_dead():
            if dl.id == message_id:
                return dl
        raise DeadLetterNotFound(message_id)

    def replay_dead(self, message_id: str) -> DeadLetter:
        with self._hub.lock:  # one step under the lock: never in both queues, nor in neither
            dq = self._hub.queues[DEAD_QUEUE]
            for i, (m, _) in enumerate(dq):
                dl = from_headers(m.message_id, m.body, m.headers)
                if dl.id == message_id:
                    del dq[i]
                    out = replay_message(dl)
                    self._hub.queues.setdefault(out.routing_key, deque()).append((out, 0))
                    self._hub.notify(out.routing_key)
                    return dl
        raise DeadLetterNotFound(message_id)

    def purge_dead(self) -> int:
        with self._hub.lock:
            dq = self._hub.queues[DEAD_QUEUE]
            n = len(dq)
            dq.clear()
            return n
