"""The engine: consume events, commit each one's transition, publish what it caused, then ack.

Per event (DESIGN §5), for each batch of deliveries that arrived together::

    decode + validate      -> invalid: dead-letter with the reason, continue
    read the few fields the event's decision needs, decide (reader -> runner.decide)
    commit atomically      -> a repeat of an applied event returns its unsent outbox
    send the outbox        (consumers get it at once; its confirm is awaited below)
    anything above fails   -> an outage: leave it unacked; else dead-letter it with the reason
  then, once for the batch:
    await every publisher confirm
    mark the outboxes sent (one round trip)
    ack each event
  a broker error anywhere (publishes refused after the broker's bounded retries, a lost
  connection): requeue every event of the batch not yet settled, so it comes back now

A crash between any two steps leaves a state from which redelivery reaches the same end:
the event is unacknowledged, so it comes back; its id is already applied, so the commit
returns the outbox entries not yet confirmed, which are published (again) and recognised
downstream by their ids. Engines hold no state of their own besides a cache of immutable
task specs, so any number of them can share the engine queue.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from runner import faults, logs, metrics, protocol
from runner.broker import DEAD_WATCH_QUEUE, ENGINE_QUEUE, Broker, Delivery, Outgoing
from runner.config import Config
from runner.decide import Rules
from runner.engine import dead_requests, durability, outcomes
from runner.engine.ahead import Ahead, commit_ahead
from runner.engine.reader import RunReader
from runner.errors import BrokerError, DecodeError, StoreError, StoreUnavailable
from runner.protocol import Event, unpack
from runner.schedule.firing import Firing
from runner.states import RUN_TERMINAL, IllegalTransition
from runner.store import Commit, DueTimer, Store, keys

log = logging.getLogger("ackflow.engine")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
_RESULT_KINDS = frozenset(
    {protocol.TASK_SUCCEEDED, protocol.TASK_FAILED, protocol.TASK_WAITING, protocol.TASK_COMPLETE}
)
_TIMER_BATCH = 200
_TIMER_HOLD_MS = 10_000  # a claimed timer reappears after this if its engine died
_RECONCILE_MS = 60_000  # how often an engine re-arms the schedules' next firings (a repair)
_TORN_VIEW_TRIES = 3  # decisions of an event that raised IllegalTransition, each from a fresh read


class Engine:
    """Advances runs by consuming the engine queue; stateless apart from a spec cache."""

    def __init__(
        self, config: Config, store: Store, broker: Broker, guard: durability.StoreGuard | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.broker = broker
        # Started (`StoreGuard.startup`) by `ackflow engine`; local mode leaves it unstarted:
        # then it only judges missing runs by the creation time their events carry.
        self.guard = guard if guard is not None else durability.StoreGuard(config, store)
        self.rules = Rules.of(config)
        self.reader = RunReader(store, self.rules)  # the spec cache: all an engine keeps
        self._next_timer_ms = 0
        self.timers_fired = 0
        self.schedules = Firing(config, store, self._publish)  # schedules' timers (runner.schedule)
        self._reconcile_ms = 0  # when to arm every active schedule's next firing again
        self._stop = threading.Event()
        self.processed = 0
        self.conflicts = 0

    # --- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        # consume declares what it consumes, and rides out a connection lost meanwhile (the
        # next poll reconnects): an engine starting while the broker restarts waits for it
        self.broker.consume([ENGINE_QUEUE, DEAD_WATCH_QUEUE], self.config.engine_prefetch)

    def run_once(self, timeout_s: float = 1.0) -> int:
        """Fire due timers, then handle whatever deliveries arrive within ``timeout_s``."""
        self._recheck_store()
        self.fire_timers()
        until_timer = (self._next_timer_ms - protocol.now_ms()) / 1000
        deliveries = self.broker.poll(max(0.0, min(timeout_s, until_timer)))
        if deliveries:
            self.handle_batch(deliveries)
        return len(deliveries)

    def run(self, burst: bool = False) -> None:
        """Serve until `stop` (or, with ``burst``, until the queue is idle)."""
        self.start()
        while not self._stop.is_set():
            n = self.run_once(0.2 if burst else 1.0)
            if burst and n == 0:
                return

    def stop(self) -> None:
        self._stop.set()
        self.broker.wakeup()

    def _recheck_store(self) -> None:
        """After the store reconnected (a restart, a failover): is it still durable, and did
        its data survive? Once per reconnect; `StoreNotDurable` (required) stops the engine."""
        try:
            self.guard.recheck_if_reconnected()
        except StoreUnavailable as e:
            log.warning("could not re-check the state store after a reconnect (%s); retrying", e)

    def fire_timers(self) -> int:
        """Publish due timers (retry backoff, timeouts, lease checks) as timer.fired events.

        A timer is claimed (hidden from other engines for a while), published with confirms,
        and only then removed: an engine that dies in between leaves it to reappear, and a
        timer published twice is one event id, applied once.
        """
        now = protocol.now_ms()
        if now < self._next_timer_ms:
            return 0
        poll_ms = int(self.config.timer_poll_s * 1000)
        try:
            if now >= self._reconcile_ms:
                self.schedules.reconcile()
                self._reconcile_ms = now + _RECONCILE_MS
            due, nxt = self.store.claim_timers(now, _TIMER_BATCH, _TIMER_HOLD_MS)
            due, armed = self._fire_schedules(due, now)
            nxt = min([*armed, *([] if nxt is None else [nxt])], default=None)
            if due:
                self._publish([Outgoing(ENGINE_QUEUE, t.timer_id, t.event) for t in due])
                self.store.remove_timers(due)
                metrics.TIMERS_FIRED.inc(len(due))
        except (StoreError, BrokerError) as e:
            log.warning("could not fire timers (%s); retrying", e)
            self._next_timer_ms = now + poll_ms
            return 0
        self.timers_fired += len(due)
        if len(due) >= _TIMER_BATCH:
            self._next_timer_ms = now  # more are due
        else:
            self._next_timer_ms = min(nxt if nxt is not None else now + poll_ms, now + poll_ms)
        return len(due)

    def _fire_schedules(self, due: list[DueTimer], now: int) -> tuple[list[DueTimer], list[int]]:
        """Fire the schedules among the claimed timers (`runner.schedule.firing`); the rest, and
        the next firings armed, are returned. One schedule's failure leaves its timer claimed,
        to come back after the hold, and does not stop the others."""
        rest, armed = [], []
        for t in due:
            if keys.schedule_of_timer(t.run_id) is None:
                rest.append(t)
                continue
            try:
                nxt = self.schedules.fire(t, now)
            except (StoreError, BrokerError) as e:
                log.warning("could not fire schedule timer %s (%s); it comes back", t.run_id, e)
                continue
            except Exception:  # a corrupt record or a bug costs that schedule, not the engine (H1)
                log.exception("could not fire schedule timer %s; it comes back", t.run_id)
                continue
            if nxt is not None:
                armed.append(nxt)
        return rest, armed

    # --- events ----------------------------------------------------------------------

    def handle(self, d: Delivery) -> bool:
        """Process one delivery to the end (ack or dead letter); False on a broker error."""
        return self.handle_batch([d])

    def handle_batch(self, deliveries: list[Delivery]) -> bool:
        """Process deliveries that arrived together; False on a broker error.

        Each event is decided and committed on its own, as its own atomic transition, and
        its outbox is sent at once, so its consequences go out without waiting for the rest.
        The publisher confirms of the whole batch are awaited together, once; only then are
        the outboxes marked sent (one round trip) and the events acknowledged. A crash or a
        broker error anywhere leaves the unacknowledged events to be redelivered: their
        commits are found applied and their unsent outboxes published again (G1-G3).
        """
        copies = [d for d in deliveries if d.queue == DEAD_WATCH_QUEUE]
        if copies:  # copies of dead letters, settled on their own (the events go on regardless)
            deliveries = [d for d in deliveries if d.queue != DEAD_WATCH_QUEUE]
            return self._handle_dead_copies(copies) & self._handle_events(deliveries)
        return self._handle_events(deliveries)

    def _handle_events(self, deliveries: list[Delivery]) -> bool:
        """`handle_batch` for the engine queue's deliveries."""
        done: list[tuple[Delivery, Event, dict[str, bytes]]] = []
        in_flight: set[str] = set()  # sent in this batch (a repeated event must not resend)
        settled: set[int] = set()  # id() of the deliveries acked or dead-lettered
        ahead = commit_ahead(self.reader, self.store, deliveries)  # the first of each run
        try:
            for d in deliveries:
                if d.redelivered and done:
                    # Settle what is done before a redelivered event, which may be the one
                    # that killed an engine: the events before it must not share its fate
                    # (each crash would count them towards poison too).
                    self._settle(done, settled)
                    done = []
                item = self._commit_one(d, in_flight, ahead.get(id(d)))
                if item is None:
                    settled.add(id(d))
                else:
                    done.append(item)
            self._settle(done, settled)
        except (BrokerError, StoreUnavailable) as e:
            log.warning("events of this batch not acknowledged (%s); they will be redelivered", e)
            for d, msg, _ in done:
                self._uncount(d, msg)
            if isinstance(e, BrokerError):
                # The connection may well be up (publishes nacked or unconfirmed after the
                # broker's bounded retries): hand the events back now, or they would wait,
                # unacknowledged, until the connection closes. A closed connection has
                # handed them back already (requeue then does nothing).
                for d in deliveries:
                    if id(d) not in settled:
                        self.broker.requeue(d)
            return False
        return True

    def _handle_dead_copies(self, copies: list[Delivery]) -> bool:
        return dead_requests.settle(copies, self.broker, self._publish, self.config.prefix)

    def _settle(self, done: list[tuple[Delivery, Event, dict[str, bytes]]], settled: set[int]) -> None:
        """Await the confirms of what ``done`` sent, mark it sent, then ack each event."""
        sent: dict[str, list[str]] = {}
        for _, msg, outbox in done:
            sent.setdefault(msg.run_id, []).extend(outbox)
        if any(sent.values()):
            started = time.perf_counter()
            self.broker.confirm()
            metrics.CONFIRM_SECONDS.labels("engine").observe(time.perf_counter() - started)
            faults.hit("engine.after_publish")
            self._store_call(lambda: self.store.mark_sent_many(sent))
            faults.hit("engine.after_mark_sent")
        for d, _, _ in done:
            faults.hit("engine.before_ack")
            self.broker.ack(d)
            settled.add(id(d))
            self.processed += 1

    def _commit_one(
        self, d: Delivery, in_flight: set[str], early: Ahead | None = None
    ) -> tuple[Delivery, Event, dict[str, bytes]] | None:
        """Decode, decide and commit one event and send its outbox, except messages already
        ``in_flight`` (their confirms are awaited by the caller); None when the delivery is
        already settled (dead-lettered). ``early``: the event, committed ahead.

        Whatever goes wrong with this one event, other than an outage, dead-letters it with
        the reason: an exception let through would end the engine, and every engine the
        broker hands the event to next (H1).
        """
        decoded: list[Event] = []  # for the log line's run context, once decoded
        try:
            return self._apply_one(d, in_flight, decoded, early)
        except (BrokerError, StoreUnavailable):
            raise  # an outage: not this event's fault; unacknowledged, it comes back
        except DecodeError as e:
            log.error("dead-lettering message %s from %s: %s", d.message_id, d.queue, e.reason)
            self.broker.dead_letter(d, e.reason)
            metrics.DEAD_LETTERS.labels("engine", "malformed").inc()
        except Exception as e:  # a bug, a corrupt run or an event no decision expects
            about = logs.about(decoded[0].run_id, decoded[0].task, decoded[0].attempt) if decoded else None
            with about or contextlib.nullcontext():
                log.exception(
                    "dead-lettering message %s from %s: it could not be applied", d.message_id, d.queue
                )
            self.broker.dead_letter(d, _clip(f"engine error: {type(e).__name__}: {e}"))
            metrics.DEAD_LETTERS.labels("engine", "error").inc()
        return None

    def _apply_one(
        self, d: Delivery, in_flight: set[str], decoded: list[Event], early: Ahead | None = None
    ) -> tuple[Delivery, Event, dict[str, bytes]] | None:
        """`_commit_one`'s work; raises whatever went wrong (the event, once decoded, goes
        into ``decoded``)."""
        msg = (
            early.event
            if early
            else protocol.decode_delivery(d.content_type, d.body, Event, "the engine queue")
        )
        decoded.append(msg)
        faults.hit("engine.after_decode")
        if d.redelivered:
            metrics.REDELIVERIES.labels("engine").inc()
        with logs.about(msg.run_id, msg.task, msg.attempt):
            if d.redelivered and self._is_poison(d, msg):
                metrics.DEAD_LETTERS.labels("engine", "poison").inc()
                return None
            try:
                outbox = self._apply_with_retry(msg, d.redelivered, early)
                faults.hit("engine.after_commit")
                outbox = {mid: raw for mid, raw in outbox.items() if mid not in in_flight}
                if outbox:
                    self.broker.send([_outgoing(mid, raw) for mid, raw in outbox.items()])
                    in_flight.update(outbox)
                    metrics.PUBLISHED.labels("engine").inc(len(outbox))
            except (BrokerError, StoreUnavailable):
                self._uncount(d, msg)
                raise
            except Exception:
                metrics.EVENTS.labels(msg.kind, "dead_letter").inc()
                raise
        return d, msg, outbox

    def _uncount(self, d: Delivery, msg: Event) -> None:
        """An outage, not a poison message: this try of a redelivered event does not count."""
        if d.redelivered:
            try:
                self.store.count_delivery(msg.run_id, msg.id, -1)
            except StoreError:
                pass

    def _publish(self, messages: list[Outgoing]) -> None:
        started = time.perf_counter()
        self.broker.publish(messages)
        metrics.CONFIRM_SECONDS.labels("engine").observe(time.perf_counter() - started)
        metrics.PUBLISHED.labels("engine").inc(len(messages))

    def _is_poison(self, d: Delivery, event: Event) -> bool:
        """Dead-letter an event whose processing began too often without finishing (G5)."""
        n = self._store_call(functools.partial(self.store.count_delivery, event.run_id, event.id))
        if n < self.config.delivery_limit:
            return False
        reason = (
            f"poison: processing of event {event.id} began {n} times without finishing "
            f"(limit {self.config.delivery_limit})"
        )
        log.error("dead-lettering %s", reason)
        self.broker.dead_letter(d, reason)
        return True

    def _store_call(self, fn: Callable[[], T]) -> T:
        """Call the store, waiting out an outage with bounded backoff (the event stays unacked)."""
        delay = 0.05
        while True:
            try:
                return fn()
            except StoreUnavailable as e:
                if self._stop.is_set():
                    raise
                log.warning("state store unavailable (%s); retrying in %.2f s", e, delay)
                self.broker.keepalive(delay)  # heartbeats go on; arrivals stay buffered
                delay = min(delay * 2, self.config.reconnect_max_s)

    def _apply_with_retry(
        self, event: Event, redelivered: bool = False, early: Ahead | None = None
    ) -> dict[str, bytes]:
        for n in range(self.config.commit_retries):
            if early is not None:  # committed ahead (`runner.engine.ahead`): not a conflict
                commit, result, early = early.commit, early.result, None
            else:
                try:
                    decided = self._store_call(lambda: self._decide(event, redelivered))
                except IllegalTransition:
                    # The view is read in round trips; another engine's commit between two of
                    # them tears it (a held task read after a concurrent resume scheduled it).
                    # Read it again, a few times: on a consistent view the error is the event's.
                    if n >= _TORN_VIEW_TRIES - 1:
                        raise
                    self.conflicts += 1
                    metrics.CONFLICTS.inc()
                    continue
                if decided is None:
                    self.guard.drop_missing(event, self._store_call)
                    return {}
                commit = decided
                result = self._store_call(functools.partial(self.store.commit, commit))
            if result.applied:
                if event.kind == protocol.RUN_SUBMIT:  # its first result reads in one round trip
                    spec_id = commit.writes.get(keys.META, {}).get("spec_id")
                    if spec_id:
                        self.reader.created(event.run_id, spec_id)
                self._log(event, commit)
                self._count(event, commit)
                outcomes.log_run_end(self.store, event, commit)
                if commit.timers:
                    self._next_timer_ms = min(
                        self._next_timer_ms, *(due for due, _ in commit.timers.values())
                    )
                return dict(commit.outbox)
            if result.outcome == "duplicate":
                metrics.EVENTS.labels(event.kind, "duplicate").inc()
                log.info("event %s already applied; republishing %d unsent", event.id, len(result.unsent))
                return result.unsent
            self.conflicts += 1
            metrics.CONFLICTS.inc()
            time.sleep(random.uniform(0, 0.001 * min(n, 20)))
        raise StoreError(f"event {event.id}: gave up after {self.config.commit_retries} conflicting commits")

    def _count(self, event: Event, commit: Commit) -> None:
        metrics.EVENTS.labels(event.kind, "applied").inc()
        if event.kind in _RESULT_KINDS and len(commit.history) == 1 and b"fenced" in commit.history[0]:
            metrics.FENCED.inc()
        if commit.status_change and commit.status_change[1] in RUN_TERMINAL and commit.created_ms:
            seconds = max(0.0, (protocol.now_ms() - commit.created_ms) / 1000)
            metrics.observe_run(commit.run_flow, commit.status_change[1], seconds)

    def _log(self, event: Event, commit: Commit) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "applied %s run=%s task=%s attempt=%s outbox=%d",
                event.kind,
                event.run_id,
                event.task,
                event.attempt,
                len(commit.outbox),
            )

    def _decide(self, event: Event, redelivered: bool = False) -> Commit | None:
        return self.reader.decide(event, redelivered)


def _clip(reason: str, size: int = 500) -> str:
    """A dead letter's reason travels in a message header: keep it short."""
    return reason if len(reason) <= size else reason[:size] + "..."


def _outgoing(message_id: str, raw: bytes) -> Outgoing:
    routing_key, body = unpack(raw)
    return Outgoing(routing_key, message_id, body)
