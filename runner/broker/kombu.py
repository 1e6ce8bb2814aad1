"""RabbitMQ through kombu/py-amqp (with kombu_admin, kombu_errors, kombu_publish and
kombu_topology, the only modules that import kombu).

Features: one durable direct exchange named by the deployment prefix; durable queues
``<prefix>.engine``, ``<prefix>.task.<name>`` and ``<prefix>.dead``, quorum by default (with
``x-delivery-limit``, a balanced leader locator and a dead-letter route to ``<prefix>.dead``),
classic as an option; persistent messages with deterministic ``message_id``; publisher confirms, pipelined over a
batch of messages (all published, then all confirmations awaited) and ``mandatory`` so an
unroutable message is an error, not a silent drop; manual acknowledgement with a per-consumer
prefetch; AMQP heartbeats serviced on every poll; reconnection with bounded, jittered backoff.
Only ``application/x-msgpack`` bodies are handled; anything else is dead-lettered. Pickle is
never accepted (bodies are never decoded by kombu at all).

URL: ``amqp://user:password@host:5672/vhost`` (``ACKFLOW_BROKER_URL``), or a cluster's nodes
separated by ';': every connect tries each node once, from a per-process random start (the
node after the last one connected, once connected), and logs the node it reached.

One thread owns a `KombuBroker` (py-amqp is not thread-safe): the engine's loop, or the
worker's connection thread. Other threads may only call `wakeup`, which ends a `poll` at once:
the poll waits in ``select`` on the connection's socket and on a pipe that `wakeup` writes to
(py-amqp reads frames exactly, so a readable socket is the only sign of unread data; over TLS,
whose buffer ``select`` cannot see, polls fall back to short slices instead).
"""

from __future__ import annotations

import logging
import math
import os
import random
import select
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

import amqp.exceptions
from kombu import Connection  # type: ignore[attr-defined]

from runner.broker.base import (
    DEAD_QUEUE,
    ENGINE_QUEUE,
    H_COUNT,
    H_QUEUE,
    H_REASON,
    Delivery,
    Outgoing,
    header_count,
)
from runner.broker.kombu_admin import KombuAdmin
from runner.broker.kombu_errors import CONN_ERRORS as _CONN_ERRORS
from runner.broker.kombu_errors import ConnectionLost as _ConnectionLost
from runner.broker.kombu_publish import REOPENINGS as REOPENINGS  # re-exported: its bound
from runner.broker.kombu_publish import Publisher
from runner.broker.kombu_topology import declare
from runner.broker.kombu_wire import text_of as _text_of  # noqa: F401 (made total on import)
from runner.config import Config, redact_url
from runner.errors import BrokerError, BrokerUnavailable
from runner.protocol import CONTENT_TYPE

log = logging.getLogger("ackflow.broker")


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def cfg_uses_tls(url: str) -> bool:
    """amqps:// (or an ssl option): TLS buffers data that ``select`` cannot see."""
    return url.startswith("amqps://") or "ssl=" in url


class KombuBroker(KombuAdmin):
    """Implements `runner.broker.Broker` and (through `KombuAdmin`) `runner.broker.DeadLetters`
    on RabbitMQ."""

    def __init__(self, config: Config, role: str = "client") -> None:
        self._config = config
        self._hosts = config.broker_urls
        self._next_host = random.randrange(len(self._hosts))  # spreads processes over the nodes
        self._host = 0
        # Shown by RabbitMQ (user_provided_name) so an operator can tell connections apart.
        self._name = f"ackflow-{role} {socket.gethostname()}:{os.getpid()}"
        self._conn: Any = None
        self._chan: Any = None  # consuming channel
        self._epoch = 0
        self._consuming: list[str] = []
        self._prefetch = 1
        self._declared: set[str] = set()
        self._buffer: list[Delivery] = []
        self._tags: dict[str, str] = {}  # consumer tag -> logical queue
        self._publisher = Publisher(config, self._lost)  # the publishing channel, its confirms
        self._backoff_s = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._close_pipe = weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)
        self._pipe_lock = threading.Lock()
        self.can_wake = not any(cfg_uses_tls(u) for u in self._hosts)

    # --- connection ------------------------------------------------------------------

    def physical(self, logical: str) -> str:
        return f"{self._config.prefix}.{logical}"

    def _connect(self) -> None:
        """Connect to one of the broker's nodes, trying each once: from a per-process random
        start (or the first, with ``broker_host_order=listed``), then round the list."""
        hosts = self._hosts
        start = 0 if self._config.broker_host_order == "listed" else self._next_host
        failures: list[str] = []
        for i in range(len(hosts)):
            n = (start + i) % len(hosts)
            try:
                self._open(hosts[n])
            except amqp.exceptions.AccessRefused as e:
                self._drop()
                failures.append(f"{redact_url(hosts[n])}: login refused ({e})")
                continue
            except _CONN_ERRORS as e:
                self._drop()
                failures.append(f"{redact_url(hosts[n])}: {e}")
                continue
            self._host, self._next_host = n, (n + 1) % len(hosts)
            self._backoff_s = 0.0
            where = f" (host {n + 1} of {len(hosts)})" if len(hosts) > 1 else ""
            log.info("connected to broker %s%s", redact_url(hosts[n]), where)
            return
        # one failure per host, each URL redacted, joined by "; " (with a space, so that
        # logs.scrub reads each URL on its own)
        what = f"any of {len(hosts)} broker hosts:" if len(hosts) > 1 else "broker at"
        raise BrokerUnavailable(f"cannot reach {what} " + "; ".join(failures))

    def _open(self, url: str) -> None:
        """Connect to one node and set up channels, topology and consumers."""
        cfg = self._config
        conn = Connection(
            url,
            heartbeat=cfg.heartbeat_s,
            connect_timeout=cfg.connect_timeout_s,
            transport_options={"client_properties": {"connection_name": self._name}},
        )
        self._conn = conn  # so that _drop closes it, whatever fails below
        try:
            conn.ensure_connection(max_retries=0)  # one try: the caller goes on to the next host
            self._chan = conn.channel()
            # Bodies as sent: py-amqp would decode them to text by their content_encoding, a
            # property any publisher sets (a codec yielding lone surrogates broke the consumer)
            self._chan.auto_decode = False
            self._publisher.open(conn)
            self._epoch += 1
            self._tags.clear()
            self._declare_all({ENGINE_QUEUE, DEAD_QUEUE, *self._declared, *self._consuming})
            for q in self._consuming:
                self._start_consumer(q)
        except amqp.exceptions.PreconditionFailed as e:
            self._drop()
            raise BrokerError(
                f"a queue under prefix {cfg.prefix!r} exists with other arguments ({e}); "
                "delete it or choose another ACKFLOW_PREFIX / ACKFLOW_QUEUE_TYPE"
            ) from None

    @property
    def connected_host(self) -> str | None:
        """The URL (password redacted) of the node this broker is connected to, or None."""
        return redact_url(self._hosts[self._host]) if self._conn is not None else None

    @property
    def consuming(self) -> bool:
        """Connected, with a consumer on each queue `consume` named (for readiness probes,
        read from any thread)."""
        return self._conn is not None and 0 < len(self._consuming) <= len(self._tags)

    def _declare_all(self, logical: set[str]) -> None:
        declare(self._conn, self._config, logical)
        self._declared |= logical

    def _start_consumer(self, logical: str) -> None:
        tag = f"{logical}-{uuid.uuid4().hex[:12]}"
        self._tags[tag] = logical
        self._chan.basic_qos(0, self._prefetch, False)
        self._chan.basic_consume(
            queue=self.physical(logical), consumer_tag=tag, no_ack=False, callback=self._on_message
        )

    def _ensure(self) -> None:
        if self._conn is None:
            self._connect()

    def connect(self, attempts: int = 1, wait_s: float = 0.0) -> None:
        """Connect now (declaring the topology): at least ``attempts`` rounds over the broker's
        hosts, and for up to ``wait_s`` seconds, with jittered backoff between rounds."""
        deadline = time.monotonic() + wait_s
        n = 0
        while True:
            try:
                self._ensure()
                return
            except BrokerUnavailable as e:
                n += 1
                left = deadline - time.monotonic()
                if n >= attempts and left <= 0:
                    raise
                if wait_s > 0:
                    log.warning("%s; retrying (for up to %.0f s more)", e, max(left, 0.0))
                self._sleep_backoff()

    def _drop(self) -> None:
        conn, self._conn, self._chan = self._conn, None, None
        self._buffer.clear()
        self._publisher.connection_closed()  # what awaited a confirm on it is in doubt
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _sleep_backoff(self) -> None:
        self._backoff_s = min(max(self._backoff_s * 2, 0.1), self._config.reconnect_max_s)
        time.sleep(self._backoff_s * random.uniform(0.5, 1.0))

    def _lost(self, e: BaseException) -> None:
        log.warning("broker connection lost (%s: %s); reconnecting", type(e).__name__, e)
        self._drop()

    # --- Broker ----------------------------------------------------------------------

    def declare(self, queues: Sequence[str] = ()) -> None:
        self._ensure()
        try:
            self._declare_all(set(queues))
        except _CONN_ERRORS as e:
            self._lost(e)
            raise BrokerUnavailable(str(e)) from None

    def consume(self, queues: Sequence[str], prefetch: int) -> None:
        """Consume ``queues`` from now on, on this connection and every later one. A connection
        that fails meanwhile (a broker restarting under an engine that is starting) is
        dropped, not raised: the next `poll` reconnects and starts these consumers."""
        self._consuming = list(queues)
        self._prefetch = prefetch
        if self._conn is None:
            self._ensure()
            return
        try:
            self._declare_all(set(queues))
            for q in queues:
                self._start_consumer(q)
        except _CONN_ERRORS as e:
            self._lost(e)

    def poll(self, timeout_s: float) -> list[Delivery]:
        if not self._service(timeout_s, until_delivery=True):
            return []
        out, self._buffer = self._buffer, []
        return out

    def keepalive(self, timeout_s: float) -> None:
        self._service(timeout_s, until_delivery=False)

    def _service(self, timeout_s: float, until_delivery: bool) -> bool:
        """Read from the connection for up to ``timeout_s``; False if it is (still) down."""
        try:
            self._ensure()
        except BrokerUnavailable as e:
            log.warning("%s; retrying", e)
            self._sleep_backoff()
            return False
        deadline = time.monotonic() + timeout_s
        try:
            self._conn.heartbeat_check()
            while not (until_delivery and self._buffer):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self.can_wake:
                    ready = self._wait(min(remaining, 1.0))
                    if ready == "woken":
                        break
                    if ready == "timeout":
                        self._conn.heartbeat_check()
                        continue
                try:
                    self._conn.drain_events(timeout=0 if self.can_wake else min(remaining, 1.0))
                except TimeoutError:
                    self._conn.heartbeat_check()
            # take whatever else already arrived, without waiting
            while True:
                try:
                    self._conn.drain_events(timeout=0)
                except TimeoutError:
                    break
        except _CONN_ERRORS as e:
            self._lost(e)
            return False
        return True

    def _wait(self, timeout_s: float) -> str:
        """Wait for data on the connection ("data"), a `wakeup` ("woken"), or the timeout."""
        sock = self._conn.connection.sock
        poller = select.poll()  # not select(): descriptors past 1024 are fine
        poller.register(sock, select.POLLIN)
        with self._pipe_lock:
            wake = self._wake_r if self._close_pipe.alive else -1
        if wake >= 0:
            poller.register(wake, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(0, math.ceil(timeout_s * 1000)))}
        if wake >= 0 and wake in ready:
            try:
                while os.read(wake, 4096):
                    pass
            except BlockingIOError:
                pass
            return "woken"
        return "data" if ready else "timeout"

    def _on_message(self, msg: Any) -> None:
        self._buffer.append(self._to_delivery(msg, self._tags.get(msg.delivery_info["consumer_tag"], "?")))

    def _to_delivery(self, msg: Any, queue: str) -> Delivery:
        info, props = msg.delivery_info, msg.properties
        headers = dict(props.get("application_headers") or {})
        return Delivery(
            body=msg.body if isinstance(msg.body, bytes) else str(msg.body).encode("utf-8", "surrogatepass"),
            queue=queue,
            content_type=props.get("content_type") or "",
            message_id=props.get("message_id"),
            redelivered=bool(info.get("redelivered")),
            delivery_count=header_count(headers.get("x-delivery-count")),
            headers=headers,
            handle=(self._epoch, info["delivery_tag"]),
        )

    @property
    def _pub(self) -> Any:
        """The publishing channel (None while disconnected)."""
        return self._publisher.channel

    def _send(self, m: Outgoing, content_type: str = CONTENT_TYPE, mandatory: bool = True) -> int:
        """Put one persistent message on the wire, not remembered for a confirm (the admin's
        raw and unconfirmed publishes)."""
        return self._publisher.put(m, content_type, mandatory)

    def send(self, messages: Sequence[Outgoing], content_type: str = CONTENT_TYPE) -> None:
        """Put persistent messages on the wire without waiting; `confirm` awaits them all.

        Consumers receive them at once (the broker routes before it confirms), so a caller
        can send after each step of a batch and wait for the confirms once, at its end."""
        if not messages:
            return
        try:
            if self._conn is None and self._publisher.pending:
                raise _ConnectionLost("the connection closed with messages unconfirmed")
            self._ensure()
            missing = {m.routing_key for m in messages} - self._declared
            if missing:
                self._declare_all(missing)
            for m in messages:
                self._publisher.send(m, content_type)
        except _CONN_ERRORS as e:
            self._lost(e)
            self._publisher.reset()
            raise _ConnectionLost(f"connection lost while publishing: {e}") from None
        except BrokerError:
            self._publisher.reset()
            raise

    def confirm(self) -> None:
        """Wait until the broker has confirmed every message sent since the last `confirm`;
        raise `PublishError` if any was unroutable or in flight when the connection closed
        (the caller must treat all as unsent). A nack or a confirm timeout sends the rest
        again on a new publishing channel, a bounded number of times (`Publisher.confirm`)."""
        self._publisher.confirm(self._conn)

    def publish(self, messages: Sequence[Outgoing], content_type: str = CONTENT_TYPE) -> None:
        """Publish and wait for every confirm (`send`, then `confirm`). A connection found
        dead (say, a client idle past the heartbeat timeout) is replaced and the batch sent
        once more, unless earlier sends were awaiting their confirms on it: the ids are the
        same, so a message that did get through is recognised downstream."""
        if not messages:
            return
        fresh = not self._publisher.pending
        for attempt in (1, 2):
            try:
                self.send(messages, content_type)
                self.confirm()
                return
            except _ConnectionLost as e:
                if attempt == 2 or not fresh:
                    raise
                log.info("%s; publishing again", e)

    def _settle(self, delivery: Delivery, fn: str, **kwargs: Any) -> bool:
        epoch, tag = delivery.handle
        if epoch != self._epoch or self._chan is None:
            # The connection it came on is gone; the broker has already put it back.
            log.info("not settling %s: its connection closed (it will be redelivered)", delivery.message_id)
            return False
        try:
            getattr(self._chan, fn)(tag, **kwargs)
        except _CONN_ERRORS as e:
            self._lost(e)
            return False
        return True

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, "basic_ack")

    def requeue(self, delivery: Delivery) -> None:
        self._settle(delivery, "basic_reject", requeue=True)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        headers = dict(delivery.headers)
        headers.update({H_REASON: reason[:1000], H_QUEUE: delivery.queue, H_COUNT: delivery.delivery_count})
        self.publish(
            [Outgoing(DEAD_QUEUE, delivery.message_id or f"dead-{uuid.uuid4().hex}", delivery.body, headers)]
        )
        self.ack(delivery)

    def wakeup(self) -> None:
        with self._pipe_lock:  # never write to a closed (perhaps reused) descriptor
            if not self._close_pipe.alive:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # full: a wakeup is pending anyway
                pass

    def close(self) -> None:
        self._drop()
        with self._pipe_lock:
            self._close_pipe()
