"""The engine: consume events, commit each one's transition, publish what it caused, then ack.

Per event (DESIGN §5), for each batch of deliveries that arrived together::

    decode + validate      -> invalid: dead-letter with the reason, continue
    read the few fields the event's decision needs, decide (runner.transitions)
    commit atomically      -> a repeat of an applied event returns its unsent outbox
    send the outbox        (consumers get it at once; its confirm is awaited below)
    anything above fails   -> an outage: leave it unacked; else dead-letter it with the reason
  then, once for the batch:
    await every publisher confirm
    mark the outboxes sent (one round trip)
    ack each event

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
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from runner import decide as transitions
from runner import durability, faults, keys, logs, metrics, protocol
from runner.broker import ENGINE_QUEUE, Broker, Delivery, Outgoing
from runner.config import Config
from runner.decide import Need, Rules, View
from runner.decide.view import success_reads as _success_reads
from runner.errors import BrokerError, DecodeError, StoreError, StoreUnavailable
from runner.flows import END, TaskSpec
from runner.protocol import CONTENT_TYPE, Event, unpack
from runner.states import RUN_TERMINAL
from runner.store import Commit, Store

log = logging.getLogger("ackflow.engine")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
_RESULT_KINDS = frozenset(
    {protocol.TASK_SUCCEEDED, protocol.TASK_FAILED, protocol.TASK_WAITING, protocol.TASK_COMPLETE}
)
_TIMER_BATCH = 200
_MAX_READS = 16  # rounds of `Need` per decision; after a full read none should be needed
_FULL_READ_AFTER = 8  # rounds of targeted reads before reading the whole run instead
_TIMER_HOLD_MS = 10_000  # a claimed timer reappears after this if its engine died


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entries."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


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
        # Task specs never change once a run exists, so engines cache them, keyed by the
        # flow spec (see `_decide`); and which flow spec each recent run has.
        self._specs: _Lru[tuple[bytes, str], TaskSpec] = _Lru()
        self._spec_keys: _Lru[str, bytes] = _Lru()
        self.rules = Rules.of(config)
        self._next_timer_ms = 0
        self.timers_fired = 0
        self._stop = threading.Event()
        self.processed = 0
        self.conflicts = 0

    # --- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        self.broker.declare()
        self.broker.consume([ENGINE_QUEUE], self.config.engine_prefetch)

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
            due, nxt = self.store.claim_timers(now, _TIMER_BATCH, _TIMER_HOLD_MS)
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
        done: list[tuple[Delivery, Event, dict[str, bytes]]] = []
        in_flight: set[str] = set()  # sent in this batch (a repeated event must not resend)
        try:
            for d in deliveries:
                if d.redelivered and done:
                    # Settle what is done before a redelivered event, which may be the one
                    # that killed an engine: the events before it must not share its fate
                    # (each crash would count them towards poison too).
                    self._settle(done)
                    done = []
                item = self._commit_one(d, in_flight)
                if item is not None:
                    done.append(item)
            self._settle(done)
        except (BrokerError, StoreUnavailable) as e:
            log.warning("events of this batch not acknowledged (%s); they will be redelivered", e)
            for d, msg, _ in done:
                self._uncount(d, msg)
            return False
        return True

    def _settle(self, done: list[tuple[Delivery, Event, dict[str, bytes]]]) -> None:
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
            self.processed += 1

    def _commit_one(
        self, d: Delivery, in_flight: set[str]
    ) -> tuple[Delivery, Event, dict[str, bytes]] | None:
        """Decode, decide and commit one event and send its outbox, except messages already
        ``in_flight`` (their confirms are awaited by the caller); None when the delivery is
        already settled (dead-lettered).

        Whatever goes wrong with this one event, other than an outage, dead-letters it with
        the reason: an exception let through would end the engine, and every engine the
        broker hands the event to next (H1).
        """
        decoded: list[Event] = []  # for the log line's run context, once decoded
        try:
            return self._apply_one(d, in_flight, decoded)
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
        self, d: Delivery, in_flight: set[str], decoded: list[Event]
    ) -> tuple[Delivery, Event, dict[str, bytes]] | None:
        """`_commit_one`'s work; raises whatever went wrong (the event, once decoded, goes
        into ``decoded``)."""
        if d.content_type and d.content_type != CONTENT_TYPE:
            raise DecodeError(f"content type {_clip(d.content_type)!r} is not {CONTENT_TYPE}")
        msg = protocol.decode(d.body)
        if not isinstance(msg, Event):
            raise DecodeError(f"the engine queue takes events, not {type(msg).__name__}")
        decoded.append(msg)
        faults.hit("engine.after_decode")
        if d.redelivered:
            metrics.REDELIVERIES.labels("engine").inc()
        with logs.about(msg.run_id, msg.task, msg.attempt):
            if d.redelivered and self._is_poison(d, msg):
                metrics.DEAD_LETTERS.labels("engine", "poison").inc()
                return None
            try:
                outbox = self._apply_with_retry(msg, d.redelivered)
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

    def _apply_with_retry(self, event: Event, redelivered: bool = False) -> dict[str, bytes]:
        for n in range(self.config.commit_retries):
            commit = self._store_call(lambda: self._decide(event, redelivered))
            if commit is None:
                self._missing_run(event)
                return {}
            result = self._store_call(functools.partial(self.store.commit, commit))
            if result.applied:
                if event.kind == protocol.RUN_SUBMIT:  # its first result reads in one round trip
                    spec_id = commit.writes.get(keys.META, {}).get("spec_id")
                    if spec_id:
                        self._spec_keys.put(event.run_id, spec_id)
                self._log(event, commit)
                self._count(event, commit)
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

    def _missing_run(self, event: Event) -> None:
        """Drop an event whose run is not in the store: expired or never created — or lost.

        A lost run (its state vanished while active: see `runner.durability`) is an ERROR,
        counted once per run across engines (`Store.record_lost`, which also lets clients
        say "lost" rather than "no run with id"); an expired one is routine.
        """
        created = durability.event_created_ms(event.body)
        if not self._store_call(lambda: self.guard.is_lost(created)):
            log.warning(
                "event %s is for unknown run %s (expired or never created); dropped",
                event.id,
                event.run_id,
            )
            metrics.EVENTS.labels(event.kind, "unknown_run").inc()
            return
        metrics.EVENTS.labels(event.kind, "lost_run").inc()
        now = protocol.now_ms()
        if self._store_call(
            functools.partial(self.store.record_lost, event.run_id, now, self.config.retention_s)
        ):
            metrics.RUNS_LOST.inc()
            log.error(
                "run %s lost: its state vanished from Redis while active (created %s; a flush, a "
                "restart without persistence, a failover to an empty replica, or an eviction); "
                "event %s dropped. Its work cannot be resumed: submit it again, and make Redis "
                "durable (appendonly yes, appendfsync always, maxmemory-policy noeviction)",
                event.run_id,
                f"{(now - created) / 1000:.1f} s ago" if created else "at an unknown time",
                event.id,
            )
        else:
            log.warning("event %s is for lost run %s; dropped", event.id, event.run_id)

    def _count(self, event: Event, commit: Commit) -> None:
        metrics.EVENTS.labels(event.kind, "applied").inc()
        if event.kind in _RESULT_KINDS and len(commit.history) == 1 and b"fenced" in commit.history[0]:
            metrics.FENCED.inc()
        if commit.status_change and commit.status_change[1] in RUN_TERMINAL and commit.created_ms:
            seconds = max(0.0, (protocol.now_ms() - commit.created_ms) / 1000)
            metrics.RUN_SECONDS.labels(commit.status_change[1]).observe(seconds)

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

    # --- reading and deciding ---------------------------------------------------------------

    def _specs_for(self, run_id: str, spec_key: bytes, names: list[str], view: View) -> None:
        """Add these task specs to the view (from the cache when possible); ``spec_key``
        names the run's flow spec in the cache (its digest)."""
        missing = []
        for n in names:
            s = self._specs.get((spec_key, n))
            if s is None:
                missing.append(n)
            else:
                view.specs[n] = s
        if missing:
            raw = self.store.read(run_id, {keys.SPEC: missing})[keys.SPEC]
            for n, r in zip(missing, raw, strict=True):
                if r is None:
                    view.absent_specs.add(n)
                else:
                    s = TaskSpec.from_data(unpack(r))
                    self._specs.put((spec_key, n), s)
                    view.specs[n] = s

    def _success_plan(self, spec_key: bytes, task: str) -> tuple[list[str], list[str], list[str]] | None:
        """`_success_reads` from cached specs alone; None if any of them is not cached."""
        spec = self._specs.get((spec_key, task))
        if spec is None:
            return None
        specs = {}
        for s in spec.succs:
            if s != END:
                found = self._specs.get((spec_key, s))
                if found is None:
                    return None
                specs[s] = found
        return _success_reads(spec, specs)

    def _fill(self, run_id: str, spec_key: bytes, view: View, need: Need) -> None:
        """Read what a decision asked for, in one round trip where possible."""
        if not need.parts:  # the whole run (rare events: control, compensation)
            view.tasks = dict(self.store.read_all(run_id, keys.TASKS))
            view.joins = dict(self.store.read_all(run_id, keys.JOINS))
            view.data = dict(self.store.read_all(run_id, keys.DATA))
            view.leases = dict(self.store.read_all(run_id, keys.LEASES))
            all_specs = self.store.read_all(run_id, keys.SPEC)
            view.specs = {n: TaskSpec.from_data(unpack(r)) for n, r in all_specs.items()}
            view.full = True
            return
        if keys.SPEC in need.parts:
            self._specs_for(run_id, spec_key, need.parts[keys.SPEC], view)
        wants = {p: ns for p, ns in need.parts.items() if p != keys.SPEC}
        if not wants:
            return
        got = self.store.read(run_id, wants)
        targets: dict[str, dict[str, bytes | None]] = {
            keys.TASKS: view.tasks,
            keys.JOINS: view.joins,
            keys.DATA: view.data,
            keys.LEASES: view.leases,
        }
        for part, names in wants.items():
            targets[part].update(zip(names, got[part], strict=True))

    def _decide(self, event: Event, redelivered: bool = False) -> Commit | None:
        now = protocol.now_ms()
        if event.kind == protocol.RUN_SUBMIT:
            r = self.store.read(event.run_id, {keys.META: ["status"]})
            view = View(meta={"status": r[keys.META][0]}, applied_ms=now, redelivered=redelivered)
            return transitions.decide(event, view, self.rules)
        wants: dict[str, list[str]] = {keys.META: [*transitions.META_FIELDS, "digest"]}
        if event.task:
            wants[keys.TASKS] = [event.task]
            wants[keys.LEASES] = [event.task]
        # A result of a run this engine has seen: with its specs cached, the reads that the
        # decision will need go in this same round trip (checked against the run's spec id).
        guess = self._spec_keys.get(event.run_id) if event.kind == protocol.TASK_SUCCEEDED else None
        plan = self._success_plan(guess, event.task) if guess is not None else None
        if plan is not None:
            wants[keys.JOINS], sole, wants[keys.DATA] = plan
            wants[keys.TASKS] = [event.task, *sole]
        first = self.store.read(event.run_id, wants)
        meta = dict(zip(wants[keys.META], first[keys.META], strict=True))
        digest = meta.pop("digest")
        view = View(meta=meta, applied_ms=now, redelivered=redelivered)
        if meta["status"] is None:
            if not (event.kind == protocol.RUN_CANCEL and digest is not None):
                return None
            view.full = True  # cancelled before its submit was applied: nothing to read yet
        # Specs never change once a run exists; runs of one flow share them (keyed by the
        # flow spec's digest), so a new run of a known flow reads none.
        spec_key = meta["spec_id"] or (event.run_id.encode() + b"\x1f" + (meta["created_ms"] or b""))
        self._spec_keys.put(event.run_id, spec_key)
        if event.task:
            view.tasks = {event.task: first[keys.TASKS][0]}
            view.leases = {event.task: first[keys.LEASES][0]}
            item = keys.item_of(event.task)  # an element of a map node: its node's spec
            self._specs_for(event.run_id, spec_key, [item[0] if item else event.task], view)
        if event.kind == protocol.TASK_SUCCEEDED and event.task in view.specs:
            # The usual reads of a result, in one or two round trips rather than one per
            # `Need`: the successors' specs (cached), their join counts, and — for
            # successors this task alone precedes (a chain), which it certainly makes ready —
            # their state and inputs too. A successor with several predecessors is read only
            # once ready.
            spec = view.specs[event.task]
            self._specs_for(event.run_id, spec_key, [s for s in spec.succs if s != END], view)
            if plan is not None and spec_key == guess:
                fields, sole, data = plan
                got = {
                    keys.JOINS: first[keys.JOINS],
                    keys.TASKS: first[keys.TASKS][1:],
                    keys.DATA: first[keys.DATA],
                }
            else:
                fields, sole, data = _success_reads(spec, view.specs)
                got = self.store.read(event.run_id, {keys.JOINS: fields, keys.TASKS: sole, keys.DATA: data})
            view.joins = dict(zip(fields, got[keys.JOINS], strict=True))
            view.tasks.update(zip(sole, got[keys.TASKS], strict=True))
            view.data.update(zip(data, got[keys.DATA], strict=True))
        for rounds in range(_MAX_READS):
            try:
                return transitions.decide(event, view, self.rules)
            except Need as asked:
                # After a few targeted reads (a long cascade, e.g. a chain of skips), read the
                # whole run once instead.
                self._fill(event.run_id, spec_key, view, asked if rounds < _FULL_READ_AFTER else Need())
        raise StoreError(f"event {event.id}: the decision kept asking for more of the run")


def _clip(reason: str, size: int = 500) -> str:
    """A dead letter's reason travels in a message header: keep it short."""
    return reason if len(reason) <= size else reason[:size] + "..."


def _outgoing(message_id: str, raw: bytes) -> Outgoing:
    routing_key, body = unpack(raw)
    return Outgoing(routing_key, message_id, body)
