"""One simulated seed: two engines and two workers — the real `Engine` and `Worker` — stepped
one at a time over the simulated world (tests/sim/world.py), with faults from a schedule.

The scheduler picks, from the seed, which process takes its next step among those with
something to do: an engine's `run_once` (fire due timers, take a batch, decide, commit,
send, confirm, mark sent, ack), a worker's `run_once` (publish finished results, lease long
tasks, take requests), one task body from a worker's pool, or a worker's heartbeat round.
When nobody has anything to do, time jumps to the next timer, delayed message or thaw.

A fault list (`Fault`) is applied at given scheduler steps; the scheduler's own choices come
from a separate random stream, so dropping a fault (the shrinker) leaves the rest of the
schedule as it was.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from runner import protocol
from runner.client import Client
from runner.config import Config
from runner.engine import Engine
from runner.engine.loop import _TIMER_HOLD_MS as TIMER_HOLD_MS
from runner.errors import RunStateError
from runner.states import FAILED, PAUSED, RUN_TERMINAL
from runner.store import keys
from runner.store.memory import MemoryStore
from tests.sim import observe, workloads
from tests.sim.checks_outside import innocent_poisoned
from tests.sim.outside import Outside
from tests.sim.pool import SimPool
from tests.sim.schedule import RUN_TARGETED, Fault, plan
from tests.sim.world import Crash, PoisonKill, Proc, SimBroker, SimStore, World
from workers.loop import Worker

CONFIG = Config(
    prefix="sim",
    # Random faults (at most 10 a seed) redeliver a message fewer times than this; poison
    # tasks and poison events kill a process each time, and reach it.
    delivery_limit=12,
    max_payload_bytes=65536,  # a flow spec of 30 tasks fits; workloads.s_big does not
    engine_prefetch=4,
    ack_after_s=2.0,
    lease_s=6.0,
    timer_poll_s=0.5,
    secret="sim-secret",
)
ENGINES, WORKERS = 2, 2
MAX_SIM_MS = 4 * 3600 * 1000  # a run still active after 4 simulated hours is stuck


@dataclass
class Outcome:
    seed: int
    runs: dict[str, tuple[str, Any]] = field(default_factory=dict)  # run id -> (status, result)
    steps: int = 0
    task_steps: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    stuck: str = ""  # why the simulation ended before every run finished and drained
    evidence: dict[str, Any] = field(default_factory=dict)  # what the checker reads

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "evidence"}


class _EngineProc:
    def __init__(self, name: str, world: World) -> None:
        self.proc = Proc(name, world)
        self.world = world
        self.frozen_until = 0
        self.boot()

    def boot(self) -> None:
        while True:
            self.conn: SimBroker = self.world.hub.connect(self.proc)
            # E1 takes one event at a time: events stay queued for another engine that steps in
            # the middle of its step (a `preempt`), so the two decide events of one run at once
            cfg = CONFIG if self.proc.name == "E0" else replace(CONFIG, engine_prefetch=1)
            self.engine = Engine(cfg, SimStore(self.world, self.proc), self.conn)  # type: ignore[arg-type]
            try:
                self.engine.start()
                return
            except Crash:
                self.conn.close_for_good(self.world.rng)

    def crash(self, kind: str = "crash_engine") -> None:
        self.conn.close_for_good(self.world.rng)
        self.world.struck(kind)
        self.boot()

    def wants(self, now: int, timer_due: int | None) -> bool:
        if self.conn.has_ready():
            return True
        return timer_due is not None and timer_due <= now and self.engine._next_timer_ms <= now


class _WorkerProc:
    def __init__(self, name: str, world: World) -> None:
        self.proc = Proc(name, world)
        self.world = world
        self.frozen_until = 0
        self.busy_until = 0  # its task bodies run no sooner (long tasks)
        self.no_beats_until = 0  # its heartbeats stall until then
        self.boot()

    def boot(self) -> None:
        while True:
            self.conn: SimBroker = self.world.hub.connect(self.proc)
            self.pool = SimPool()
            self.worker = Worker(
                CONFIG,
                self.conn,  # type: ignore[arg-type]
                workloads.REGISTRY,
                queues=["*"],
                concurrency=2,
                name=self.proc.name,
                store=SimStore(self.world, self.proc),  # type: ignore[arg-type]
                pool=self.pool,
                clock=self.world.clock.monotonic,
                heartbeat_thread=False,
            )
            try:
                self.worker.start()
                return
            except Crash:
                self.conn.close_for_good(self.world.rng)

    def crash(self, kind: str = "crash_worker") -> None:
        self.conn.close_for_good(self.world.rng)
        self.world.struck(kind)
        self.boot()

    def wants_step(self) -> bool:
        """Whether its loop has something to do now (results to publish, requests to take,
        a lease or an announcement due); stepping it otherwise changes nothing."""
        w = self.worker
        if self.conn.has_ready() or w._unpublished or not w._done.empty():
            return True
        if w._backlog and w._inflight - w._freed < w.concurrency:
            return True
        return bool(w._inflight) and self.next_due() <= self.world.clock.monotonic()

    def next_due(self) -> float:
        """When (monotonic s) its next lease or started-announcement comes due."""
        return self.world.clock.monotonic() + min(
            self.worker._until_next_lease(), self.worker._until_next_announce()
        )

    def wants_beat(self) -> bool:
        now = self.world.clock.monotonic()
        return any(r.leased and not r.finished and now >= r.next_beat for r in self.worker.snapshot())


def _store(seed: int) -> Any:
    """None (the memory store) unless SIM_STORE=redis: then the real RedisStore, own prefix."""
    if os.environ.get("SIM_STORE", "memory") != "redis":
        return None
    from tests.sim.redis_store import SimRedisStore

    return SimRedisStore(CONFIG, str(seed))


class Sim:
    def __init__(self, seed: int, faults: list[Fault], max_steps: int = 30_000) -> None:
        self.seed = seed
        self.faults = faults
        self.max_steps = max_steps
        self.rng = random.Random(f"schedule:{seed}")
        self.world = World(random.Random(f"effects:{seed}"), _store(seed))
        self.workload = workloads.generate(random.Random(f"workload:{seed}"))
        self.engines = [_EngineProc(f"E{i}", self.world) for i in range(ENGINES)]
        self.workers = [_WorkerProc(f"W{i}", self.world) for i in range(WORKERS)]
        self.client_proc = Proc("client", self.world)
        self.client = Client(CONFIG, self.world.mem, lambda: self.world.hub.connect(self.client_proc))  # type: ignore[arg-type,return-value]
        self.run_ids: list[str] = []
        self.to_resume: set[str] = set()
        self.retry_once = {f"r{seed}-{i}" for i in self.workload.retried}
        self.outside = Outside(self, random.Random(f"outside:{seed}"))
        self.world.preempt = self._preempt
        self.world.max_body = CONFIG.max_payload_bytes + 1024  # the event around the values
        self.task_steps = 0
        self.timeouts: dict[str, dict[str, float]] = {}  # run -> task -> its timeout, if any

    # --- faults ------------------------------------------------------------------------

    def _proc(self, name: str) -> _EngineProc | _WorkerProc:
        return {p.proc.name: p for p in (*self.engines, *self.workers)}[name]

    def apply(self, f: Fault) -> None:
        w = self.world
        if f.kind == "crash":
            p = self._proc(f.target)
            p.proc.crash_at = p.proc.calls + f.arg
        elif f.kind == "freeze":
            p = self._proc(f.target)
            p.frozen_until = w.clock.ms + f.arg
            if f.arg > 2000:  # past the heartbeat: the broker drops the connection
                p.conn.lose(w.rng)
            w.struck("freeze")
        elif f.kind == "conn_loss":
            self._proc(f.target).conn.lose(w.rng)
            w.struck("conn_loss")
        elif f.kind == "conn_loss_mid_step":
            p = self._proc(f.target)
            p.proc.drop_at = p.proc.calls + f.arg
        elif f.kind == "long_task":
            wp = self._proc(f.target)
            assert isinstance(wp, _WorkerProc)
            wp.busy_until = w.clock.ms + abs(f.arg)
            if f.arg < 0:  # its heartbeats stall as long: the leases of its tasks expire
                wp.no_beats_until = wp.busy_until
            w.struck("long_task")
        elif f.kind == "duplicate":
            w.hub.duplicate_next += f.arg
        elif f.kind == "delay":
            w.hub.delay_next += f.arg
        elif f.kind == "store_outage":
            w.outage_calls += f.arg
        elif f.kind == "lost_reply":
            w.lost_replies += f.arg
        elif f.kind == "clock_jump":
            w.clock.advance(f.arg)
            w.struck("clock_jump")
        elif f.kind == "flaky_conn":
            p = self._proc(f.target)
            p.proc.flaky += f.arg
            if isinstance(p, _WorkerProc):  # its tasks run long, so it leases them
                p.busy_until = max(p.busy_until, w.clock.ms + 3000 * f.arg)
        elif f.kind == "preempt":
            self._proc(f.target).proc.preempt_until = self._proc(f.target).proc.calls + f.arg
            w.struck("preempt")
        elif f.kind == "pause":
            rid = self.run_ids[int(f.target)]
            try:
                self.client.pause(rid, "sim", wait_s=None)
            except RunStateError:
                return
            self.to_resume.add(rid)
            w.struck("pause")
        elif f.kind == "early_complete":
            if self.outside.early_complete(self.run_ids[int(f.target)]):
                w.struck(f.kind)
        elif f.kind in RUN_TARGETED:
            if self.outside.control(f.kind, self.run_ids[int(f.target)]):
                w.struck(f.kind)
        else:
            self.outside.inject(f.kind, f.arg)

    def _preempt(self, name: str) -> None:
        """Another engine takes a whole step in the middle of engine ``name``'s step."""
        now = self.world.clock.ms
        due = self._timer_due()
        for e in self.engines:
            if e.proc.name != name and e.frozen_until <= now and e.wants(now, due):
                self.world.struck("preempted_step")
                saved, e.proc.preempt_until = e.proc.preempt_until, 0  # no nesting in the nested step
                try:
                    self._guard(e, lambda e=e: e.engine.run_once(0))
                finally:
                    e.proc.preempt_until = saved
                return

    def _resume_paused(self) -> None:
        # A run stays here until it ends: a second pause (or a delayed one) can land after the
        # resume of the first, and must be resumed too.
        for rid in sorted(self.to_resume):
            status = self._status(rid)
            if status == PAUSED:
                self.client.resume(rid, "sim", wait_s=None)
            elif status in RUN_TERMINAL and not (status == FAILED and self.outside.will_retry(rid)):
                self.to_resume.discard(rid)

    # --- the loop ------------------------------------------------------------------------

    def _status(self, rid: str) -> str | None:
        raw = self.world.mem.read(rid, {keys.META: ["status"]})[keys.META][0]
        return raw.decode() if raw else None

    def _timer_due(self) -> int | None:
        return min(self.world.mem._timers.values(), default=None)

    def done(self) -> bool:
        if self.to_resume or self.world.hub.undelivered():
            return False
        if self.outside.lazy_due() is not None or self.outside.waiting():
            return False
        if any(p.pool.jobs or not p.worker.idle for p in self.workers):
            return False
        # A timer claimed by an engine whose publish failed reappears after the claim's hold:
        # wait for it. One due later than that is left behind (a violation, if its run ended).
        due = self._timer_due()
        if due is not None and due <= self.world.clock.ms + TIMER_HOLD_MS:
            return False
        return all(self._status(r) in RUN_TERMINAL for r in self.run_ids)

    def _submit(self) -> None:
        for i, (fl, inputs) in enumerate(self.workload.runs):
            rid = f"r{self.seed}-{i}"
            self.client.submit(fl, inputs, run_id=rid)
            self.run_ids.append(rid)
            timed = {n: s.timeout_s for n, s in fl.tasks.items() if s.timeout_s}
            if timed:
                self.timeouts[rid] = timed

    def _actions(self, now: int) -> list[Callable[[], None]]:
        acts: list[Callable[[], None]] = []
        due = self._timer_due()
        for e in self.engines:
            if e.frozen_until <= now and e.wants(now, due):
                acts.append(lambda e=e: self._engine_step(e))
        lazy = self.outside.lazy_due()
        if lazy is not None and lazy <= now:
            acts.append(self.outside.complete_one)
        for w in self.workers:
            if w.frozen_until > now:
                continue
            if w.wants_step():
                acts.append(lambda w=w: self._guard(w, lambda: w.worker.run_once(0)))
            if w.pool.jobs and w.busy_until <= now:
                acts.append(lambda w=w: self._guard(w, lambda: self._run_job(w)))
            if w.no_beats_until <= now and w.wants_beat():
                acts.append(lambda w=w: self._guard(w, w.worker.beat))
        return acts

    def _engine_step(self, e: _EngineProc) -> None:
        self._guard(e, lambda: e.engine.run_once(0))
        if isinstance(self.world.mem, MemoryStore):  # look at its state directly
            observe.check_timeouts(self.world, self.timeouts)

    def _probe(self, rid: str) -> tuple[int, str | None, bool]:
        """What a task body sees as it starts: the order, its run's status, and whether its
        worker's last store call failed (then the worker could not check the run)."""
        w = next(p for p in self.workers if p.proc.name == workloads.CURRENT[0])
        return self.world.seq, self._status(rid), w.proc.store_failed

    def _run_job(self, w: _WorkerProc) -> None:
        workloads.CURRENT[0] = w.proc.name
        before = len(workloads.EXECUTIONS)
        w.pool.run_one(self.rng)
        self.task_steps += len(workloads.EXECUTIONS) - before

    def _guard(self, p: _EngineProc | _WorkerProc, step: Callable[[], object]) -> None:
        try:
            step()
        except PoisonKill:
            p.crash("poison_kill")
        except Crash:
            p.crash()

    def _idle_until(self) -> int | None:
        """When something next becomes due, with nobody able to act now."""
        now = self.world.clock.ms
        mono = self.world.clock.monotonic()
        cands = [self.world.hub.next_release(), self.outside.lazy_due()]
        due = self._timer_due()
        awake = [e.engine._next_timer_ms for e in self.engines if e.frozen_until <= now]
        if due is not None and awake:  # an engine looks for timers no sooner than it planned
            cands.append(max(due, min(awake)))
        cands += [p.frozen_until for p in (*self.engines, *self.workers) if p.frozen_until > now]
        cands += [t for w in self.workers for t in (w.busy_until, w.no_beats_until) if t > now]
        for w in self.workers:
            if w.frozen_until > now:
                continue
            if w.worker._inflight:
                cands.append(now + int((w.next_due() - mono) * 1000) + 1)
            for r in w.worker.snapshot() if w.no_beats_until <= now else ():
                if r.leased and not r.finished:
                    cands.append(now + int(max(0.0, r.next_beat - mono) * 1000))
        found = [c for c in cands if c is not None]
        return min(found) if found else None

    def run(self) -> Outcome:
        workloads.EXECUTIONS.clear()
        workloads.TRIES.clear()
        workloads.EXEC_INFO.clear()
        workloads.LAZY.clear()
        workloads.PROBE[0] = self._probe
        previous = protocol.set_wall_clock(self.world.clock.wall)
        ids = random.Random(f"ids:{self.seed}")
        uuid4 = uuid.uuid4  # the client's event ids: from the seed, so a seed replays exactly
        uuid.uuid4 = lambda: uuid.UUID(int=ids.getrandbits(128), version=4)
        try:
            return self._run()
        finally:
            uuid.uuid4 = uuid4
            protocol.set_wall_clock(previous)

    def _run(self) -> Outcome:
        out = Outcome(self.seed)
        clock = self.world.clock
        start_ms = clock.ms
        self._submit()
        faults = list(self.faults)
        fi = 0
        step = 0
        for step in range(self.max_steps):
            while fi < len(faults) and faults[fi].step <= step:
                self.apply(faults[fi])
                fi += 1
            self.world.hub.release(clock.ms)
            if self.to_resume:
                self._resume_paused()
            if self.retry_once:
                self.outside.operator_retries()
            acts = self._actions(clock.ms)
            if acts:
                self.rng.choice(acts)()
                clock.advance(self.rng.randint(0, 3))
                continue
            if fi >= len(faults) and self.done():
                break
            nxt = self._idle_until()
            clock.advance(max(1, (nxt - clock.ms) if nxt is not None else 500))
            if clock.ms - start_ms > MAX_SIM_MS:
                out.stuck = "runs still active after 4 simulated hours"
                break
        else:
            out.stuck = f"not finished after {self.max_steps} steps"
        out.steps = step
        out.task_steps = self.task_steps
        out.faults = dict(self.world.counts)
        for rid in self.run_ids:
            info = self.client.status(rid)
            out.runs[rid] = (info.status, info.result)
        out.evidence.update(observe.evidence(self))
        poisoned = innocent_poisoned(out.evidence)
        if poisoned:  # a known limitation, counted here (see checks_outside.innocent_poisoned)
            out.faults["known:innocent_poisoned"] = len(poisoned)
        return out


def simulate(
    seed: int, faults: list[Fault] | None = None, max_steps: int = 30_000
) -> tuple[Outcome, Outcome, list[Fault]]:
    """The fault-free run of the seed's workload, then the run under ``faults`` (default:
    the schedule drawn from the seed), and the faults used."""
    base = Sim(seed, [], max_steps).run()
    if faults is None:
        faults = plan(
            seed,
            base.steps + 50,
            [f"E{i}" for i in range(ENGINES)] + [f"W{i}" for i in range(WORKERS)],
            len(base.runs),
        )
    return base, Sim(seed, faults, max_steps).run(), faults
