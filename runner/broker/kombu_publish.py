"""Publishing with confirms on RabbitMQ: the `KombuBroker`'s publishing channel and what awaits
its confirm (part of the RabbitMQ adapter; it imports kombu's py-amqp).

Every message goes out persistent and ``mandatory`` (an unroutable one comes back, and is an
error, never a silent drop) on a channel in confirm mode. `Publisher` remembers each message
until the broker confirms it, so that a nack or a confirm timeout can send it again on a new
channel; `confirm` does that at most `REOPENINGS` times, pausing (jittered, doubling) before
each new channel, then raises `BrokerUnavailable`. On RabbitMQ 3.10 a channel opened while a
quorum queue's leader is being elected may stay bound to the dead leader and be nacked forever:
a new channel, a moment later, is confirmed. The connection, and its consumers' deliveries, stay.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import amqp.exceptions

from runner.broker.base import Outgoing
from runner.broker.kombu_errors import CONN_ERRORS, ConnectionLost
from runner.config import Config
from runner.errors import BrokerUnavailable, PublishError

log = logging.getLogger("ackflow.broker")

REOPENINGS = 4
_REOPEN_PAUSE_S = 0.25  # doubled per reopening, capped by reconnect_max_s, times 0.5..1
_CLOSED = "the connection closed before its confirm"
Sent = tuple[Outgoing, str]  # a message and its content type, kept until confirmed


class Publisher:
    """The publishing channel of one connection and the confirms it awaits.

    ``lost`` is the broker's: called with the error when the connection failed under a
    publish, it drops the connection (and calls `connection_closed`). Used by the broker's
    thread only."""

    def __init__(self, config: Config, lost: Callable[[BaseException], None]) -> None:
        self._config = config
        self._lost = lost
        self.channel: Any = None  # in confirm mode
        self._seq = 0
        self._unconfirmed: dict[int, Sent] = {}  # delivery tag -> message (to re-send)
        self._nacked: list[Sent] = []  # refused by the broker: re-sent on a new channel
        self._failed: dict[str, str] = {}  # message id -> why (never re-sent)

    # --- the channel ---------------------------------------------------------------------

    def open(self, conn: Any) -> None:
        """A new publishing channel on ``conn``. Its confirms count only while it is the
        publishing channel: a late one from a channel given up on must not settle a message
        re-sent on the next (the sequence numbers start again at 1)."""
        pub = conn.channel()
        pub.confirm_select()

        def on_ack(tag: int, multiple: bool) -> None:
            if pub is self.channel:
                for t in self._tags_upto(tag, multiple):
                    del self._unconfirmed[t]

        def on_nack(tag: int, multiple: bool) -> None:
            if pub is self.channel:
                for t in self._tags_upto(tag, multiple):
                    self._nacked.append(self._unconfirmed.pop(t))

        pub.events["basic_ack"].add(on_ack)
        pub.events["basic_nack"].add(on_nack)
        pub.events["basic_return"].add(self._on_return)
        self._seq = 0
        self._unconfirmed.clear()
        self.channel = pub

    def connection_closed(self) -> None:
        """The connection is gone: what awaited its confirm is in doubt, and `confirm` says so
        (no caller may take it for published)."""
        self.channel = None
        for m, _ in [*self._unconfirmed.values(), *self._nacked]:
            self._failed[m.message_id] = _CLOSED
        self._unconfirmed.clear()
        self._nacked.clear()

    def _tags_upto(self, tag: int, multiple: bool) -> list[int]:
        return [t for t in self._unconfirmed if t == tag or (multiple and t <= tag)]

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        mid = message.properties.get("message_id", "?")
        self._failed[mid] = f"unroutable: no queue bound for routing key {routing_key!r} ({exc})"

    # --- sending -------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Messages sent since the last `confirm` and not settled by it."""
        return bool(self._unconfirmed or self._nacked or self._failed)

    def put(self, m: Outgoing, content_type: str, mandatory: bool = True) -> int:
        """Put one persistent message on the wire; return its confirm sequence number."""
        self._seq += 1
        amsg = self.channel.prepare_message(
            m.body,
            content_type=content_type,
            content_encoding="binary",
            headers=m.headers or None,
            properties={"delivery_mode": 2, "message_id": m.message_id},
        )
        self.channel.basic_publish(
            amsg, exchange=self._config.prefix, routing_key=m.routing_key, mandatory=mandatory
        )
        return self._seq

    def send(self, m: Outgoing, content_type: str) -> None:
        """Put ``m`` on the wire and remember it until it is confirmed."""
        self._unconfirmed[self.put(m, content_type)] = (m, content_type)

    def reset(self) -> None:
        self._unconfirmed.clear()
        self._nacked.clear()
        self._failed.clear()

    # --- confirming ----------------------------------------------------------------------

    def confirm(self, conn: Any) -> None:
        """Wait until the broker has confirmed every message sent since the last `confirm`;
        raise `PublishError` if any was unroutable, `ConnectionLost` if any was in flight when
        the connection closed (the caller must treat all as unsent), `BrokerUnavailable`
        after `REOPENINGS` new channels in a row that did not confirm."""
        try:
            for reopening in range(1, REOPENINGS + 2):
                again, why = self._await(conn)
                if not again:
                    return
                self._reopen(conn, reopening, len(again), why)
                if reopening > REOPENINGS:  # the last new channel is left for the next try
                    raise BrokerUnavailable(
                        f"{len(again)} message(s) {why} on {REOPENINGS + 1} publishing channels "
                        f"in a row; not published (message {again[0][0].message_id})"
                    )
                try:
                    for m, content_type in again:
                        self.send(m, content_type)
                except CONN_ERRORS as e:
                    self._lost(e)
                    raise ConnectionLost(f"connection lost while publishing again: {e}") from None
        finally:
            self.reset()

    def _await(self, conn: Any) -> tuple[list[Sent], str]:
        """Wait for the confirms of what is unconfirmed, up to the confirm timeout; return
        the messages to send again (nacked, or unconfirmed in time) and why, or raise."""
        timeout_s = self._config.confirm_timeout_s
        deadline = time.monotonic() + timeout_s
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                # short slices: a confirm can take long (a quorum queue recovering after a
                # broker restart) and heartbeats must go on meanwhile, or the broker
                # closes the connection and the publish never completes
                conn.drain_events(timeout=min(remaining, 0.5))
            except TimeoutError:
                pass
            except CONN_ERRORS as e:
                self._lost(e)
                raise ConnectionLost(f"connection lost before the confirms: {e}") from None
            conn.heartbeat_check()
        if self._failed:
            mid, why = next(iter(self._failed.items()))
            if why == _CLOSED:
                raise ConnectionLost(f"message {mid}: {why}")
            raise PublishError(f"message {mid}: {why}")
        nacked, late = self._nacked, list(self._unconfirmed.values())
        self._nacked, self._unconfirmed = [], {}
        why = "nacked by the broker" if nacked else ""
        if late:
            late_why = f"unconfirmed after {timeout_s:g} s"
            why = f"{why}, {late_why}" if why else late_why
        return nacked + late, why

    def _reopen(self, conn: Any, reopening: int, count: int, why: str) -> None:
        """Pause (jittered, doubling), close the publishing channel and open a new one."""
        pause = min(_REOPEN_PAUSE_S * 2 ** (reopening - 1), self._config.reconnect_max_s)
        log.warning(
            "%d message(s) %s; reopening the publishing channel (%d of %d) in %.2f s",
            count,
            why,
            reopening,
            REOPENINGS + 1,
            pause,
        )
        time.sleep(pause * random.uniform(0.5, 1.0))
        old, self.channel = self.channel, None
        try:
            if old is not None and old.is_open:
                old.close()
            self.open(conn)
        except (*CONN_ERRORS, amqp.exceptions.AMQPError) as e:
            # whatever failed, no half-open state: without a publishing channel the
            # connection goes too, and the next use reconnects
            self._lost(e)
            raise ConnectionLost(f"connection lost reopening the publishing channel: {e}") from None
