"""What the simulated processes touch: a clock, a broker and a store, all owned by the simulator.

Every call a process makes into its broker connection or its store is a *point*
(`Proc.point`): the simulator may crash the process there (a `Crash`, which no production
``except Exception`` catches, unwinds the process's step as ``kill -9`` would end it), or the
store may be out (`StoreUnavailable` before the call, or after it: the write landed, the
reply was lost).

The broker follows the contract of `runner.broker.base`: manual acks, publishes confirmed by
`confirm`, unacknowledged deliveries handed back (counted) when their connection goes, and
unconfirmed publishes of a lost connection either routed or lost. It can also duplicate a
message or delay it behind later ones.

The world also keeps what the checker needs that the run's history does not show
(`World.seen`): every heartbeat that renewed a lease, the store call at which each event was
committed, timers handed out before they were due, messages over the payload limit.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from runner.broker.base import DEAD_QUEUE, ENGINE_QUEUE, H_COUNT, H_QUEUE, H_REASON, Delivery, Outgoing
from runner.errors import BrokerUnavailable, StoreUnavailable
from runner.protocol import decode
from runner.store import Beat, Commit, CommitResult, DueTimer, keys
from runner.store.memory import MemoryStore

T = TypeVar("T")
START_MS = 1_767_225_600_000  # 2026-01-01: simulated time starts here, whatever the host's clock


class Crash(BaseException):
    """A simulated crash of one process: unwinds its step; the simulator restarts it."""


class PoisonKill(Crash):
    """What kills a process each time it handles one message (a poison task or event)."""


POISON_RUN = "zpoison"  # an engine reading a run named so dies (tests/sim/outside.py)


class SimClock:
    """Simulated time in ms, both the wall clock (`protocol.now_ms`) and the monotonic one."""

    def __init__(self) -> None:
        self.ms = START_MS

    def wall(self) -> float:
        return self.ms / 1000

    def monotonic(self) -> float:
        return (self.ms - START_MS) / 1000 + 1000.0

    def advance(self, ms: int) -> None:
        self.ms += max(0, ms)


class Proc:
    """The fault hooks of one process (an engine, a worker, or the client)."""

    def __init__(self, name: str, world: World) -> None:
        self.name = name
        self.world = world
        self.calls = 0  # broker and store calls made, over every incarnation
        self.crash_at: int | None = None  # crash when about to make this call
        self.drop_at: int | None = None  # lose the broker connection when about to make this call
        self.conn: SimBroker | None = None  # its current broker connection
        self.preempt_until = 0  # until this call, another engine may take a step at each call
        self.store_failed = False  # its last store call failed (StoreUnavailable)
        self.flaky = 0  # its next confirms fail this many times, the connection lost each time

    def point(self) -> None:
        self.calls += 1
        self.world.seq += 1
        if self.calls < self.preempt_until and self.world.preempt is not None:
            if self.world.rng.random() < 0.2:  # (and before each commit: `SimStore.commit`)
                self.world.preempt(self.name)
        if self.crash_at is not None and self.calls >= self.crash_at:
            self.crash_at = None
            raise Crash(self.name)
        if self.drop_at is not None and self.calls >= self.drop_at and self.conn is not None:
            self.drop_at = None
            self.world.struck("conn_loss_mid_step")
            self.conn.lose(self.world.rng)
            if self.world.rng.random() < 0.5:  # and the process dies soon after
                self.crash_at = self.calls + self.world.rng.randint(1, 3)


class World:
    """The shared simulated state: clock, queues, store, and the faults armed on them."""

    def __init__(self, rng: random.Random, store: Any = None) -> None:
        self.rng = rng
        self.clock = SimClock()
        self.mem = MemoryStore() if store is None else store  # or a SimRedisStore (SIM_STORE=redis)
        self.hub = SimHub(self)
        self.outage_calls = 0  # the next store calls that fail before reaching the store
        self.lost_replies = 0  # the next store calls that land but whose reply is lost
        self.counts: dict[str, int] = {}  # faults that struck, by kind
        self.seq = 0  # broker and store calls made so far, by every process: the order of things
        self.preempt: Callable[[str], None] | None = None  # the simulator: another engine steps
        self.max_body = 1 << 60  # a message over this on the engine queue is a violation
        self.seen: dict[str, Any] = {
            "beats": [],  # (seq, run, task, attempt, until ms) of each heartbeat that renewed
            "committed": {},  # event id -> seq of the commit that applied it
            "fired": set(),  # (run, timer id) of the timers removed after their event was sent
            "violations": [],  # what the world saw break at once
        }

    def struck(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


# --- the store ------------------------------------------------------------------------


class SimStore:
    """One process's view of the memory store, through its fault points."""

    def __init__(self, world: World, proc: Proc) -> None:
        self._world = world
        self._mem = world.mem
        self._proc = proc

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        self._proc.point()
        w = self._world
        self._proc.store_failed = True
        if w.outage_calls > 0:
            w.outage_calls -= 1
            w.struck("store_outage_call")
            raise StoreUnavailable("simulated store outage")
        out = fn(*args)
        if w.lost_replies > 0:
            w.lost_replies -= 1
            w.struck("store_lost_reply")
            raise StoreUnavailable("simulated store reply lost")
        self._proc.store_failed = False
        return out

    def read(self, run_id: str, wants: Mapping[str, Sequence[str]]) -> dict[str, list[bytes | None]]:
        if run_id.startswith(POISON_RUN) and self._proc.name.startswith("E"):
            raise PoisonKill(self._proc.name)
        return self._call(self._mem.read, run_id, wants)

    def read_all(self, run_id: str, part: str) -> dict[str, bytes]:
        return self._call(self._mem.read_all, run_id, part)

    def commit(self, c: Commit) -> CommitResult:
        p = self._proc
        if p.calls < p.preempt_until and self._world.preempt is not None:
            self._world.preempt(p.name)  # another engine commits between this one's reads and commit
        seq = self._world.seq + 1
        out = self._call(self._mem.commit, c)
        self._world.seen["committed"].setdefault(c.event_id, seq)
        return out

    def read_many(
        self, reads: Sequence[tuple[str, Mapping[str, Sequence[str]]]]
    ) -> list[dict[str, list[bytes | None]]]:
        return [self.read(run_id, wants) for run_id, wants in reads]

    def commit_many(self, commits: Sequence[Commit]) -> list[CommitResult]:
        """A pipeline of commits: each through its own fault points, so a crash, an outage or
        a lost reply can strike between any two of them (the first ones applied)."""
        return [self.commit(c) for c in commits]

    def count_delivery(self, run_id: str, event_id: str, delta: int = 1) -> int:
        return self._call(self._mem.count_delivery, run_id, event_id, delta)

    def mark_sent(self, run_id: str, message_ids: Sequence[str]) -> None:
        self._call(self._mem.mark_sent, run_id, message_ids)

    def mark_sent_many(self, sent: Mapping[str, Sequence[str]]) -> None:
        self._call(self._mem.mark_sent_many, sent)

    def history(self, run_id: str, start: int = 0) -> list[bytes]:
        return self._call(self._mem.history, run_id, start)

    def claim_timers(self, now_ms: int, limit: int, hold_ms: int) -> tuple[list[DueTimer], int | None]:
        out = self._call(self._mem.claim_timers, now_ms, limit, hold_ms)
        for t in out[0]:  # a timer never fires before it is due
            due = decode(t.event).at_ms
            if due > now_ms:
                self._world.seen["violations"].append(
                    f"timer {t.timer_id} handed out at {now_ms}, {due - now_ms} ms before it was due"
                )
        return out

    def remove_timers(self, timers: Sequence[DueTimer]) -> None:
        self._call(self._mem.remove_timers, timers)
        self._world.seen["fired"].update((t.run_id, t.timer_id) for t in timers)

    def heartbeat(self, run_id: str, task: str, attempt: int, until_ms: int, progress: bytes | None) -> Beat:
        before = self._mem.read(run_id, {keys.LEASES: [task]})[keys.LEASES][0]
        seq = self._world.seq + 1
        beat = self._call(self._mem.heartbeat, run_id, task, attempt, until_ms, progress)
        if beat.leased:
            self._world.seen["beats"].append((seq, run_id, task, attempt, until_ms))
            held = (before or b"").split(b":")[0]
            if held != str(attempt).encode():
                self._world.seen["violations"].append(
                    f"{run_id}: a heartbeat of {task} attempt {attempt} renewed a lease held by "
                    f"attempt {held.decode() or '(none)'}"
                )
        return beat

    def reserve(self, run_id: str, digest: bytes) -> bytes | None:
        return self._call(self._mem.reserve, run_id, digest)

    def record_lost(self, run_id: str, now_ms: int, keep_s: int) -> bool:
        return self._call(self._mem.record_lost, run_id, now_ms, keep_s)

    def is_lost(self, run_id: str) -> bool:
        return self._call(self._mem.is_lost, run_id)

    def __getattr__(self, name: str) -> Any:  # the rest (listing, watches, epoch): no faults
        return getattr(self._mem, name)


# --- the broker -----------------------------------------------------------------------

Held = tuple[Outgoing, int]  # a message and its deliveries so far


class SimHub:
    """The queues of the simulated broker."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.queues: dict[str, deque[Held]] = {ENGINE_QUEUE: deque(), DEAD_QUEUE: deque()}
        self.delayed: list[tuple[int, int, str, Outgoing, int]] = []  # (release ms, seq, ...)
        self._seq = itertools.count()
        self.duplicate_next = 0  # the next routed messages are routed twice
        self.delay_next = 0  # the next routed messages wait behind later ones
        self.conns: list[SimBroker] = []

    def route(self, m: Outgoing, count: int = 0) -> None:
        if m.routing_key == ENGINE_QUEUE and len(m.body) > self.world.max_body:
            self.world.seen["violations"].append(
                f"a message of {len(m.body)} bytes, over the payload limit, was published ({m.message_id})"
            )
        q = self.queues.setdefault(m.routing_key, deque())
        if self.delay_next > 0 and m.routing_key != DEAD_QUEUE:
            self.delay_next -= 1
            self.world.struck("delayed_delivery")
            due = self.world.clock.ms + self.world.rng.randint(1, 3000)
            heapq.heappush(self.delayed, (due, next(self._seq), m.routing_key, m, count))
            return
        q.append((m, count))
        if self.duplicate_next > 0 and m.routing_key != DEAD_QUEUE:
            self.duplicate_next -= 1
            self.world.struck("duplicate_delivery")
            q.append((m, count))

    def release(self, now_ms: int) -> int:
        n = 0
        while self.delayed and self.delayed[0][0] <= now_ms:
            _, _, qname, m, count = heapq.heappop(self.delayed)
            self.queues.setdefault(qname, deque()).append((m, count))
            n += 1
        return n

    def next_release(self) -> int | None:
        return self.delayed[0][0] if self.delayed else None

    def ready(self, prefix: str) -> bool:
        return any(q for name, q in self.queues.items() if name.startswith(prefix))

    def undelivered(self) -> int:
        """Messages not yet settled anywhere but in the dead queue."""
        n = sum(len(q) for name, q in self.queues.items() if name != DEAD_QUEUE) + len(self.delayed)
        return n + sum(len(c.unacked) + len(c.pending) for c in self.conns)

    def connect(self, proc: Proc) -> SimBroker:
        c = SimBroker(self, proc)
        self.conns.append(c)
        proc.conn = c
        return c


class SimBroker:
    """One process's connection; implements `runner.broker.Broker`."""

    can_wake = True  # no busy polling: the simulator decides when a process looks again
    _tags = itertools.count(1)

    def __init__(self, hub: SimHub, proc: Proc) -> None:
        self.hub = hub
        self.proc = proc
        self.consuming: list[str] = []
        self.prefetch = 1
        self.unacked: dict[int, tuple[str, Outgoing, int]] = {}
        self.pending: list[Outgoing] = []  # sent, not yet confirmed
        self.in_doubt = False  # publishes were pending when the connection was lost
        self.closed = False

    # the faults the simulator applies to a connection

    def lose(self, rng: random.Random) -> None:
        """The connection goes: deliveries back to their queues (counted), each unconfirmed
        publish either reached the broker or did not."""
        for q, msg, count in self.unacked.values():
            self.hub.queues.setdefault(q, deque()).appendleft((msg, count + 1))
        self.unacked.clear()
        if self.pending:
            self.in_doubt = True
        self.lose_pending(rng)

    def lose_pending(self, rng: random.Random) -> None:
        """Each unconfirmed publish either reached the broker or is lost."""
        for m in self.pending:
            if rng.random() < 0.5:
                self.hub.route(m)
            else:
                self.hub.world.struck("publish_lost")
        self.pending = []

    def close_for_good(self, rng: random.Random) -> None:
        self.lose(rng)
        self.closed = True
        if self in self.hub.conns:
            self.hub.conns.remove(self)

    # the Broker contract

    def declare(self, queues: Sequence[str] = ()) -> None:
        self.proc.point()
        for q in queues:
            self.hub.queues.setdefault(q, deque())

    def consume(self, queues: Sequence[str], prefetch: int) -> None:
        self.declare([q for q in queues if not q.endswith("*")])
        self.consuming = list(queues)
        self.prefetch = prefetch

    def _queues(self) -> list[str]:
        out = []
        for q in self.consuming:
            if q.endswith("*"):
                out += [n for n in self.hub.queues if n.startswith(q[:-1]) and n != DEAD_QUEUE]
            else:
                out.append(q)
        return out

    def has_ready(self) -> bool:
        if len(self.unacked) >= self.prefetch:
            return False
        return any(self.hub.queues.get(q) for q in self._queues())

    def poll(self, timeout_s: float) -> list[Delivery]:
        self.proc.point()
        out = []
        for q in self._queues():
            dq = self.hub.queues.get(q)
            while dq and len(self.unacked) < self.prefetch:
                msg, count = dq.popleft()
                tag = next(self._tags)
                self.unacked[tag] = (q, msg, count)
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

    def keepalive(self, timeout_s: float) -> None:
        self.proc.point()
        # waiting out an outage: time passes (the process is blocked meanwhile)
        self.hub.world.clock.advance(int(timeout_s * 1000))

    def send(self, messages: Sequence[Outgoing]) -> None:
        self.proc.point()
        self.pending.extend(messages)

    def confirm(self) -> None:
        self.proc.point()
        # The link drops just as the confirms are due: any of an engine's; a worker's when it
        # confirms a lease (its long task's delivery goes back only once the lease is durable)
        leasing = any(m.message_id.startswith("leased:") for m in self.pending)
        if self.proc.flaky > 0 and self.pending and (self.proc.name[0] == "E" or leasing):
            self.proc.flaky -= 1
            self.hub.world.struck("flaky_confirm")
            self.lose(self.hub.world.rng)
            self.in_doubt = False
            if self.proc.name.startswith("W") and self.hub.world.rng.random() < 0.5:
                self.proc.crash_at = self.proc.calls + self.hub.world.rng.randint(1, 3)  # and it dies
            raise BrokerUnavailable("simulated flaky connection: publishes in doubt")
        if self.in_doubt:
            # The confirms of this call's sends never come: each reached the broker or not
            # (left pending, they would sit on the connection forever).
            self.in_doubt = False
            self.lose_pending(self.hub.world.rng)
            raise BrokerUnavailable("simulated connection loss: publishes in doubt")
        for m in self.pending:
            self.hub.route(m)
        self.pending = []

    def publish(self, messages: Sequence[Outgoing]) -> None:
        self.send(messages)
        self.confirm()

    def ack(self, delivery: Delivery) -> None:
        self.proc.point()
        self.unacked.pop(delivery.handle, None)  # a stale handle (connection lost): nothing

    def requeue(self, delivery: Delivery) -> None:
        self.proc.point()
        held = self.unacked.pop(delivery.handle, None)
        if held is not None:
            q, msg, count = held
            self.hub.queues.setdefault(q, deque()).appendleft((msg, count + 1))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.proc.point()
        if self.unacked.pop(delivery.handle, None) is None:
            return  # a stale handle: the broker redelivers it instead
        headers = dict(delivery.headers)
        headers.update({H_REASON: reason, H_QUEUE: delivery.queue, H_COUNT: delivery.delivery_count})
        self.hub.queues[DEAD_QUEUE].append(
            (Outgoing(DEAD_QUEUE, delivery.message_id or "", delivery.body, headers), 0)
        )

    def wakeup(self) -> None:
        pass

    def close(self) -> None:
        self.close_for_good(self.hub.world.rng)
