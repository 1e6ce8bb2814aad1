"""The operator side of the RabbitMQ adapter: what the CLI, the HTTP API, the benchmark and
the tests do to queues, apart from running flows through them.

`KombuAdmin` is a base of `runner.broker.kombu.KombuBroker` and works on its connection:
queue inspection (depth, get, purge, publish_raw, publish_unconfirmed, delete_queues) and the
`runner.broker.DeadLetters` protocol, which reads the dead queue on a channel of its own so
that reading never disturbs the broker's consumers or confirms. Engines and workers use none
of it. May import kombu (it is part of the adapter); the rest of ackflow never imports it
directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import amqp

from runner.broker.base import (
    DEAD_QUEUE,
    DEAD_WATCH_QUEUE,
    DeadLetter,
    DeadLetterNotFound,
    Delivery,
    Outgoing,
    QueueStats,
)
from runner.broker.dead_letters import from_headers, replay_message
from runner.broker.kombu_errors import CONN_ERRORS
from runner.broker.kombu_topology import queue_arguments
from runner.errors import BrokerError, BrokerUnavailable
from runner.protocol import CONTENT_TYPE

if TYPE_CHECKING:
    from runner.config import Config


class KombuAdmin:
    """Queue inspection and `DeadLetters`, on the connection of the `KombuBroker` it is a base of."""

    if TYPE_CHECKING:  # provided by KombuBroker
        _config: Config
        _conn: Any
        _chan: Any
        _declared: set[str]

        def _ensure(self) -> None: ...
        def _lost(self, e: BaseException) -> None: ...
        def physical(self, logical: str) -> str: ...
        def _to_delivery(self, msg: Any, queue: str) -> Delivery: ...
        def _send(self, m: Outgoing, content_type: str = CONTENT_TYPE, mandatory: bool = True) -> int: ...
        def publish(self, messages: Sequence[Outgoing], content_type: str = CONTENT_TYPE) -> None: ...

    # --- inspection (CLI and tests) ----------------------------------------------------

    @property
    def server_version(self) -> str | None:
        """The RabbitMQ version the connected node announced, or None (not connected)."""
        try:
            props = self._conn.connection.server_properties
        except AttributeError:  # not connected
            return None
        version = props.get("version")
        return version.decode(errors="replace") if isinstance(version, bytes) else version

    def queue_arguments(self, logical: str) -> dict[str, Any]:
        return queue_arguments(self._config, logical)

    def depth(self, logical: str) -> int:
        """Messages ready in a queue (not counting unacknowledged ones)."""
        self._ensure()
        _, count, _ = self._chan.queue_declare(queue=self.physical(logical), passive=True)
        return int(count)

    def queue_stats(self, logical: str) -> QueueStats | None:
        """Ready messages and consumers, by a passive declare on a channel of its own (the
        broker closes the channel of a passive declare of a missing queue)."""
        self._ensure()
        try:
            chan = self._conn.channel()
        except CONN_ERRORS as e:
            self._lost(e)
            raise BrokerUnavailable(str(e)) from None
        try:
            _, ready, consumers = chan.queue_declare(queue=self.physical(logical), passive=True)
            return QueueStats(int(ready), int(consumers))
        except amqp.exceptions.NotFound:
            return None
        except CONN_ERRORS as e:
            self._lost(e)
            raise BrokerUnavailable(str(e)) from None
        except amqp.exceptions.AMQPError as e:  # refused (permissions): the channel is closed
            raise BrokerError(f"cannot inspect queue {self.physical(logical)}: {e}") from None
        finally:
            if chan.is_open:
                chan.close()

    def get(self, logical: str) -> Delivery | None:
        """Take one message from a queue without a consumer (acknowledge or dead-letter it)."""
        self._ensure()
        msg = self._chan.basic_get(queue=self.physical(logical), no_ack=False)
        if msg is None:
            return None
        return self._to_delivery(msg, logical)

    def publish_unconfirmed(self, messages: Sequence[Outgoing]) -> None:
        """Publish without waiting for confirms (benchmarks of the raw limit only)."""
        self._ensure()
        for m in messages:
            self._send(m, mandatory=False)

    def purge(self, logical: str) -> int:
        """Drop every ready message of a queue; return how many."""
        self._ensure()
        return int(self._chan.queue_purge(queue=self.physical(logical)) or 0)

    def publish_raw(self, logical: str, body: bytes, content_type: str = CONTENT_TYPE) -> None:
        """Publish arbitrary bytes, confirmed (tests of bad input; never used by ackflow itself)."""
        self.publish([Outgoing(logical, f"raw-{uuid.uuid4().hex}", body)], content_type)

    def delete_queues(self) -> None:
        """Delete every queue this broker declared, and the exchange (tests only)."""
        self._ensure()
        for q in sorted(self._declared | {DEAD_WATCH_QUEUE}):  # an engine's, maybe not ours
            self._chan.queue_delete(queue=self.physical(q))
        self._chan.exchange_delete(exchange=self._config.prefix)

    # --- DeadLetters ---------------------------------------------------------------------

    @contextmanager
    def _dead_channel(self) -> Iterator[Any]:
        """A channel of its own for reading the dead queue: closing it puts back every message
        taken but not acknowledged, without touching this broker's consumers or confirms.
        On quorum queues every operation reads the whole dead queue (see below)."""
        self._ensure()
        try:
            chan = self._conn.channel()
            chan.auto_decode = False  # dead letters are shown and replayed as sent (see kombu.py)
        except CONN_ERRORS as e:
            self._lost(e)
            raise BrokerUnavailable(str(e)) from None
        try:
            yield chan
            if self._config.queue_type == "quorum":
                # A quorum queue puts returned messages at its back: had we taken only the
                # first few, closing would rotate the queue and "oldest first" would be a lie
                # from then on. Taking all of them returns all, in their order.
                while chan.basic_get(queue=self.physical(DEAD_QUEUE), no_ack=False) is not None:
                    pass
        except CONN_ERRORS as e:
            self._lost(e)
            raise BrokerUnavailable(str(e)) from None
        finally:
            try:
                chan.close()
            except CONN_ERRORS as e:
                self._lost(e)

    def _next_dead(self, chan: Any) -> tuple[int, DeadLetter] | None:
        msg = chan.basic_get(queue=self.physical(DEAD_QUEUE), no_ack=False)
        if msg is None:
            return None
        d = self._to_delivery(msg, DEAD_QUEUE)
        return msg.delivery_info["delivery_tag"], from_headers(
            d.message_id, d.body, d.headers, self.physical("")
        )

    def _find_dead(self, chan: Any, message_id: str) -> tuple[int, DeadLetter]:
        while (got := self._next_dead(chan)) is not None:
            if got[1].id == message_id:
                return got
        raise DeadLetterNotFound(message_id)

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        with self._dead_channel() as chan:
            while len(out) < limit and (got := self._next_dead(chan)) is not None:
                out.append(got[1])
        return out

    def show_dead(self, message_id: str) -> DeadLetter:
        with self._dead_channel() as chan:
            return self._find_dead(chan, message_id)[1]

    def replay_dead(self, message_id: str) -> DeadLetter:
        with self._dead_channel() as chan:
            tag, dl = self._find_dead(chan, message_id)
            self.publish([replay_message(dl)])  # confirmed before the dead copy goes
            chan.basic_ack(tag)
            return dl

    def purge_dead(self) -> int:
        with self._dead_channel() as chan:
            return int(chan.queue_purge(queue=self.physical(DEAD_QUEUE)) or 0)
