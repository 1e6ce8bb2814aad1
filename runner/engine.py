"""The engine: consume one event, commit its transition, publish what it caused, then ack.

Per event (DESIGN §5)::

    decode + validate      -> invalid: dead-letter with the reason, continue
    read the few fields the event's decision needs, decide (runner.transitions)
    commit atomically      -> a repeat of an applied event returns its unsent outbox
    publish the outbox with publisher confirms
    mark the outbox sent
    ack

A crash between any two steps leaves a state from which redelivery reaches the same end:
the event is unacknowledged, so it comes back; its id is already applied, so the commit
returns the outbox entries not yet confirmed, which are published (again) and recognised
downstream by their ids. Engines hold no state of their own besides a cache of immutable
task specs, so any number of them can share the engine queue.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from runner import faults, keys, protocol, transitions
from runner.broker import ENGINE_QUEUE, Broker, Delivery, Outgoing
from runner.config import Config
from runner.errors import BrokerError, DecodeError, StoreError, StoreUnavailable
from runner.flows import END, TaskSpec
from runner.protocol import CONTENT_TYPE, Event, unpack
from runner.store import Commit, Store
from runner.transitions import View

log = logging.getLogger("ackflow.engine")
T = TypeVar("T")


class _SpecCache:
    """Task specs never change once a run exists, so engines cache them (keyed by creation)."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, bytes, str], TaskSpec] = OrderedDict()

    def get(self, key: tuple[str, bytes, str]) -> TaskSpec | None:
        spec = self._items.get(key)
        if spec is not None:
            self._items.move_to_end(key)
        return spec

    def put(self, key: tuple[str, bytes, str], spec: TaskSpec) -> None:
        self._items[key] = spec
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class Engine:
    """Advances runs by consuming the engine queue; stateless apart from a spec cache."""

    def __init__(self, config: Config, store: Store, broker: Broker) -> None:
        self.config = config
        self.store = store
        self.broker = broker
        self._specs = _SpecCache()
        self._stop = threading.Event()
        self.processed = 0
        self.conflicts = 0

    # --- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        self.broker.declare()
        self.broker.consume([ENGINE_QUEUE], self.config.engine_prefetch)

    def run_once(self, timeout_s: float = 1.0) -> int:
        """Handle whatever deliveries arrive within ``timeout_s``; return how many."""
        deliveries = self.broker.poll(timeout_s)
        for i, d in enumerate(deliveries):
            if not self.handle(d):
                # The broker connection went away: the rest were put back by the broker.
                log.warning("abandoned %d deliveries after a broker error", len(deliveries) - i)
                break
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

    # --- one event ---------------------------------------------------------------------

    def handle(self, d: Delivery) -> bool:
        """Process one delivery to the end (ack or dead letter); False on a broker error."""
        try:
            if d.content_type and d.content_type != CONTENT_TYPE:
                raise DecodeError(f"content type {d.content_type!r} is not {CONTENT_TYPE}")
            msg = protocol.decode(d.body)
            if not isinstance(msg, Event):
                raise DecodeError(f"the engine queue takes events, not {type(msg).__name__}")
        except DecodeError as e:
            log.error("dead-lettering message %s from %s: %s", d.message_id, d.queue, e.reason)
            try:
                self.broker.dead_letter(d, e.reason)
            except BrokerError as be:
                log.error("could not dead-letter: %s", be)
                return False
            return True
        faults.hit("engine.after_decode")
        try:
            if d.redelivered and self._is_poison(d, msg):
                return True
            try:
                outbox = self._apply_with_retry(msg, d.redelivered)
            except (BrokerError, StoreUnavailable):
                raise
            except Exception as e:  # a bug or a corrupt run: park the event, keep serving
                log.exception("event %s could not be applied", msg.id)
                self.broker.dead_letter(d, f"engine error: {type(e).__name__}: {e}")
                return True
            faults.hit("engine.after_commit")
            if outbox:
                self.broker.publish([_outgoing(mid, raw) for mid, raw in outbox.items()])
                faults.hit("engine.after_publish")
                self._store_call(lambda: self.store.mark_sent(msg.run_id, list(outbox)))
                faults.hit("engine.after_mark_sent")
        except (BrokerError, StoreUnavailable) as e:
            log.warning("event %s not acknowledged (%s); it will be redelivered", msg.id, e)
            if d.redelivered:  # an outage, not a poison message: this try does not count
                try:
                    self.store.count_delivery(msg.run_id, msg.id, -1)
                except StoreError:
                    pass
            return False
        faults.hit("engine.before_ack")
        self.broker.ack(d)
        self.processed += 1
        return True

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
                log.warning(
                    "event %s is for unknown run %s (expired or never created); dropped",
                    event.id,
                    event.run_id,
                )
                return {}
            result = self._store_call(functools.partial(self.store.commit, commit))
            if result.applied:
                self._log(event, commit)
                return dict(commit.outbox)
            if result.outcome == "duplicate":
                log.info("event %s already applied; republishing %d unsent", event.id, len(result.unsent))
                return result.unsent
            self.conflicts += 1
            time.sleep(random.uniform(0, 0.001 * min(n, 20)))
        raise StoreError(f"event {event.id}: gave up after {self.config.commit_retries} conflicting commits")

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

    def _specs_for(self, run_id: str, created: bytes, names: list[str]) -> dict[str, TaskSpec]:
        out: dict[str, TaskSpec] = {}
        missing = []
        for n in names:
            s = self._specs.get((run_id, created, n))
            if s is None:
                missing.append(n)
            else:
                out[n] = s
        if missing:
            raw = self.store.read(run_id, {keys.SPEC: missing})[keys.SPEC]
            for n, r in zip(missing, raw, strict=True):
                if r is not None:
                    s = TaskSpec.from_data(unpack(r))
                    self._specs.put((run_id, created, n), s)
                    out[n] = s
        return out

    def _decide(self, event: Event, redelivered: bool = False) -> Commit | None:
        retention = self.config.retention_s
        now = protocol.now_ms()
        if event.kind == protocol.RUN_SUBMIT:
            r = self.store.read(event.run_id, {keys.META: ["status"]})
            view = View(meta={"status": r[keys.META][0]}, applied_ms=now, redelivered=redelivered)
            return transitions.decide_submit(event, view, retention)
        first = self.store.read(
            event.run_id,
            {
                keys.META: list(transitions.META_FIELDS),
                keys.TASKS: [event.task],
            },
        )
        meta = dict(zip(transitions.META_FIELDS, first[keys.META], strict=True))
        if meta["status"] is None:
            return None
        created = meta["created_ms"] or b""
        view = View(
            meta=meta, tasks={event.task: first[keys.TASKS][0]}, applied_ms=now, redelivered=redelivered
        )
        view.specs = self._specs_for(event.run_id, created, [event.task])
        if event.task not in view.specs:
            return transitions.decide_started(event, view, retention)  # records "unknown task"
        if event.kind == protocol.TASK_STARTED:
            return transitions.decide_started(event, view, retention)
        if event.kind == protocol.TASK_FAILED:
            return transitions.decide_failed(event, view, retention)
        # task.succeeded. A stale or fenced result needs nothing more: its no-op commit is ready.
        stale = transitions.stale_commit(event, view, retention)
        if stale is not None:
            return stale
        # Successors' specs and join counts, then the inputs of the ones this result makes ready.
        succs = view.specs[event.task].succs
        real = [s for s in succs if s != END]
        view.specs.update(self._specs_for(event.run_id, created, real))
        view.joins = dict(
            zip(succs, self.store.read(event.run_id, {keys.JOINS: succs})[keys.JOINS], strict=True)
        )
        ready = transitions.ready_successors(event, view)
        wanted = transitions.needed_data(view.specs, [s for s in ready if s != END])
        if END in ready:
            wanted += unpack(meta["outputs"] or protocol.pack([]))
        own = set(view.specs[event.task].provides)
        wanted = sorted({w for w in wanted if w not in own})
        if wanted:
            vals = self.store.read(event.run_id, {keys.DATA: wanted})[keys.DATA]
            view.data = dict(zip(wanted, vals, strict=True))
        return transitions.decide_succeeded(event, view, retention)


def _outgoing(message_id: str, raw: bytes) -> Outgoing:
    routing_key, body = unpack(raw)
    return Outgoing(routing_key, message_id, body)
