"""Is the state store durable, and did it lose its data? Checked at start and on reconnect.

ackflow acknowledges an event to RabbitMQ once Redis has answered its commit. That is only
as safe as Redis's persistence: without AOF (``appendonly no``; RDB ``save`` snapshots lose
everything written since the last one), with ``appendfsync everysec``/``no`` (a power loss
takes the last second or more), or with an evicting ``maxmemory-policy``, an acknowledged
transition — or a whole active run — can vanish while RabbitMQ keeps its side. This module
says so, loudly and once, and recognises the runs such a loss erased:

- `judge` is a pure function from ``CONFIG GET`` values to a `Verdict`;
- `StoreGuard` reads them through the `Store` protocol at start and whenever the store
  reconnected (`Store.session` changed), sets the ``ackflow_store_durable`` gauge, refuses
  (`StoreNotDurable`) under ``ACKFLOW_REQUIRE_DURABLE_STORE``, and keeps the deployment
  epoch: a key ``<prefix>:epoch`` created once (SET NX) and never expiring. When it vanishes
  or changes, Redis lost its data (a flush, a restart without persistence, a failover to an
  empty replica) and every run that was active then is lost.
- `vanished_while_active` decides, for an event whose run is missing, whether the run was
  lost rather than expired or never created: events from workers carry the run's creation
  time (`CREATED_FIELD`), and a run created less than ``ACKFLOW_RETENTION_S`` ago cannot
  have expired (retention counts from its finish), while a creation time proves it existed.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import metrics, protocol
from runner.config import Config
from runner.errors import StoreNotDurable, StoreUnavailable
from runner.protocol import Event
from runner.store import Store

log = logging.getLogger("ackflow.durability")
engine_log = logging.getLogger("ackflow.engine")  # `drop_missing` speaks for the engine, as ever

CREATED_FIELD = protocol.CREATED_FIELD  # the run's creation time, in worker events

# The settings a store reports; a memory store reports {MEMORY: "yes"} instead.
APPENDONLY, APPENDFSYNC, MAXMEMORY_POLICY, SAVE = "appendonly", "appendfsync", "maxmemory-policy", "save"
SETTINGS = (APPENDONLY, APPENDFSYNC, MAXMEMORY_POLICY, SAVE)
MEMORY = "memory"

_FIX_AOF = "appendonly yes / appendfsync always"


@dataclass(frozen=True)
class Verdict:
    """What the store's settings mean for the runs in it.

    ``checked`` is False when the settings could not be read (``CONFIG`` disabled or renamed,
    as on many managed Redis services); such a store is not known to be durable.
    """

    durable: bool
    checked: bool
    problems: tuple[str, ...] = ()  # each: what can be lost, and exactly how to fix it
    settings: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.checked:
            return (
                "Redis durability could not be checked (CONFIG GET is disabled or not permitted); "
                "make sure it runs with appendonly yes, appendfsync always and maxmemory-policy noeviction"
            )
        if self.durable:
            return "Redis is durable (appendonly yes, appendfsync always, maxmemory-policy noeviction)"
        return "Redis is NOT durable: " + "; ".join(self.problems)


def judge(settings: Mapping[str, str] | None) -> Verdict:
    """The verdict on these ``CONFIG GET`` values; None means they could not be read.

    ``appendfsync everysec`` counts as not durable: a Redis *process* crash loses nothing
    (each write reaches the kernel before the reply), but an OS crash or power loss loses up
    to about a second (more if fsync stalls) of commits that RabbitMQ has already been told
    are safe — the events are acked, so nothing redelivers them, and a run can stop for good.
    That breaks guarantee G3, so it is a WARNING, not a footnote; operators who accept it
    can, but ``ACKFLOW_REQUIRE_DURABLE_STORE`` will not.
    """
    if settings is None:
        return Verdict(durable=False, checked=False)
    if settings.get(MEMORY) == "yes":
        return Verdict(
            False,
            True,
            ("the in-memory store keeps nothing past this process (local mode, by design)",),
            dict(settings),
        )
    problems = []
    aof = settings.get(APPENDONLY, "")
    fsync = settings.get(APPENDFSYNC, "")
    policy = settings.get(MAXMEMORY_POLICY, "")
    if aof != "yes":
        snap = settings.get(SAVE, "")
        since = (
            f"RDB snapshots (save {snap!r}) keep only what was written before the last one"
            if snap
            else "nothing is saved at all"
        )
        problems.append(
            f"appendonly is {aof or 'unset'}: a Redis restart or crash loses every run's state — "
            f"{since}. Fix: CONFIG SET appendonly yes; CONFIG SET appendfsync always; CONFIG REWRITE "
            f"(or in redis.conf: {_FIX_AOF})"
        )
    elif fsync != "always":
        lost = "about 1 s" if fsync == "everysec" else "up to 30 s (the OS decides when to write)"
        problems.append(
            f"appendfsync is {fsync or 'unset'}: on power loss or an OS crash {lost} of acknowledged "
            "transitions can be lost (their events are already acked, so runs may stop for good). "
            "Fix: CONFIG SET appendfsync always; CONFIG REWRITE (or in redis.conf: appendfsync always)"
        )
    if policy != "noeviction":
        what = (
            "finished runs' keys (those with a TTL) before their retention"
            if policy.startswith("volatile")
            else "any key, including an active run's state (the run is then lost)"
        )
        problems.append(
            f"maxmemory-policy is {policy or 'unset'}: under memory pressure Redis evicts {what}. "
            "Fix: CONFIG SET maxmemory-policy noeviction; CONFIG REWRITE "
            "(or in redis.conf: maxmemory-policy noeviction)"
        )
    return Verdict(not problems, True, tuple(problems), dict(settings))


def vanished_while_active(created_ms: int, now_ms: int, retention_s: int) -> bool:
    """Whether a run created at ``created_ms`` whose state is missing at ``now_ms`` was lost.

    A creation time proves the run existed (only a commit of its submit sets one), and a run
    expires ``retention_s`` after it *finished*, so one created less than that ago cannot have
    expired. 0 (unknown: an old worker, a timer) decides nothing.
    """
    return created_ms > 0 and now_ms - created_ms < retention_s * 1000


def event_created_ms(body: Mapping[str, object]) -> int:
    """The run's creation time an event carries, or 0."""
    value = body.get(CREATED_FIELD)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class StoreGuard:
    """Watches one store for a lack of durability and for a loss of its data.

    Calls go to the store only at `startup`, when `Store.session` says it reconnected (once
    per reconnect, never per command), and on the rare path of an event for a missing run.
    """

    def __init__(self, config: Config, store: Store, require_durable: bool | None = None) -> None:
        self._config = config
        self._store = store
        self._require = config.require_durable_store if require_durable is None else require_durable
        self._session: int | None = None  # None: not started (local mode never starts one)
        self._epoch: str | None = None
        self.verdict: Verdict | None = None

    def drop_missing(self, event: Event, call: Callable[[Callable[[], Any]], Any]) -> None:
        """Drop an event whose run is not in the store: expired or never created — or lost.

        A lost run (its state vanished while active: see `runner.engine.durability`) is an ERROR,
        counted once per run across engines (`Store.record_lost`, which also lets clients
        say "lost" rather than "no run with id"); an expired one is routine.
        """
        created = event_created_ms(event.body)
        if not call(lambda: self.is_lost(created)):
            engine_log.warning(
                "event %s is for unknown run %s (expired or never created); dropped",
                event.id,
                event.run_id,
            )
            metrics.EVENTS.labels(event.kind, "unknown_run").inc()
            return
        metrics.EVENTS.labels(event.kind, "lost_run").inc()
        now = protocol.now_ms()
        if call(functools.partial(self._store.record_lost, event.run_id, now, self._config.retention_s)):
            metrics.RUNS_LOST.inc()
            engine_log.error(
                "run %s lost: its state vanished from Redis while active (created %s; a flush, a "
                "restart without persistence, a failover to an empty replica, or an eviction); "
                "event %s dropped. Its work cannot be resumed: submit it again, and make Redis "
                "durable (appendonly yes, appendfsync always, maxmemory-policy noeviction)",
                event.run_id,
                f"{(now - created) / 1000:.1f} s ago" if created else "at an unknown time",
                event.id,
            )
        else:
            engine_log.warning("event %s is for lost run %s; dropped", event.id, event.run_id)

    @property
    def started(self) -> bool:
        return self._session is not None

    def startup(self) -> Verdict:
        """Check the settings (log, gauge, refuse if required) and learn the epoch."""
        self._session = self._store.session()
        verdict = self._check()
        self._epoch = self._store.epoch(_new_epoch())
        return verdict

    def recheck_if_reconnected(self) -> bool:
        """After a reconnect: check the settings again and whether the data survived.

        Returns True if the data was lost (the epoch vanished or changed). Raises
        `StoreNotDurable` under ``require_durable`` if the store is no longer durable, and
        `StoreUnavailable` if it cannot be reached (then the next call tries again).
        """
        if self._session is None:
            return False
        session = self._store.session()
        if session == self._session:
            return False
        self._check()
        lost = self.data_lost()
        self._session = session
        return lost

    def data_lost(self) -> bool:
        """Whether the epoch this process knew vanished or changed (logged at ERROR once per
        change; the new epoch is adopted, so the next loss is recognised too)."""
        if self._epoch is None:
            return False
        current = self._store.epoch(_new_epoch())
        if current == self._epoch:
            return False
        metrics.STORE_DATA_LOSSES.inc()  # before the log line: whoever reads the line sees the count
        log.error(
            "Redis lost its data: the deployment epoch %s is gone (now %s) — a FLUSHDB/FLUSHALL, "
            "a restart without persistence, or a failover to an empty replica. Every run that "
            "was active is lost; waiting clients are told so (RunLost). %s",
            self._epoch,
            current,
            (self.verdict.describe() if self.verdict is not None else ""),
        )
        self._epoch = current
        return True

    def is_lost(self, created_ms: int, now_ms: int | None = None) -> bool:
        """For an event whose run is missing: was that run lost (see module doc)?

        The epoch is read too (a started guard; one round trip on this rare path), so the
        loss of the whole store is reported once, and an event without a creation time that
        arrives as the loss is noticed still counts its run as lost.
        """
        now = protocol.now_ms() if now_ms is None else now_ms
        store_lost = self.started and self.data_lost()
        return store_lost or vanished_while_active(created_ms, now, self._config.retention_s)

    def _check(self) -> Verdict:
        verdict = judge(self._store.durability_settings())
        changed = verdict != self.verdict
        self.verdict = verdict
        metrics.set_store_durability(verdict.durable, verdict.settings)
        if changed:
            level = logging.INFO if verdict.durable else logging.WARNING
            log.log(level, "%s", verdict.describe())
        if self._require and not verdict.durable:
            raise StoreNotDurable(
                f"{verdict.describe()} — refusing to run because ACKFLOW_REQUIRE_DURABLE_STORE is set"
            )
        return verdict


def keep_checking(guard: StoreGuard, stop: threading.Event, every_s: float) -> StoreNotDurable | None:
    """For a process with no loop of its own that touches the store (``ackflow serve``): every
    ``every_s`` seconds until ``stop``, look for a loss of the data (the epoch: one round trip,
    which also reconnects to a restarted Redis) and, after a reconnect, check the settings
    again — what an engine does after each reconnect. Returns the refusal that ended it
    (`StoreNotDurable`, under required durability), or None once stopped."""
    unreachable = False
    while not stop.wait(every_s):
        try:
            guard.data_lost()
            guard.recheck_if_reconnected()
            unreachable = False
        except StoreUnavailable as e:
            if not unreachable:  # once per outage
                log.warning("could not check the state store (%s); trying again every %g s", e, every_s)
            unreachable = True
        except StoreNotDurable as e:
            return e
    return None


def _new_epoch() -> str:
    return f"{protocol.now_ms()}-{uuid.uuid4().hex[:12]}"
