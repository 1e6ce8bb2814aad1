"""The world outside the engines and workers: operators, outside systems, and stray messages.

- **Operators** control runs through `runner.client.Client` exactly as the CLI does (its
  status check, then the control event on the engine queue): cancel, pause, resume and
  retry, as faults at any scheduler step. A workload's gated runs (`workloads.s_gate`) have
  an operator who retries each once when it is FAILED, in the fault-free run too.
- **Outside systems** complete lazy tasks (`workloads.s_lazy`) with the token the body handed
  out, after a delay drawn from the seed: at once (often before the task's defer is applied:
  an early completion), or late; sometimes twice (the second must be refused or fenced); and
  an outside party tries forged tokens, which the client must refuse before sending anything.
  The ``early_complete`` fault completes a run's lazy tasks before their bodies ran, with the
  genuine token (`Client.token_for`): accepted only while the task is scheduled or running.
- **Stray messages** on the engine queue: events of runs that do not exist, undecodable
  bodies, an event whose processing kills every engine that takes it (engine poison), and a
  result for a running attempt whose value names do not match what the task provides.

What each did is written to ``Outside.evidence`` for the checker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner import protocol
from runner.broker.base import ENGINE_QUEUE, Outgoing, task_queue
from runner.client.tokens import InvalidToken
from runner.decide.records import TaskState
from runner.errors import AckflowError, BrokerUnavailable, RunStateError, StoreUnavailable
from runner.protocol import Event
from runner.states import FAILED, RUN_TERMINAL, RUNNING, SCHEDULED
from runner.store import keys
from tests.sim import workloads
from tests.sim.world import POISON_RUN

if TYPE_CHECKING:
    from tests.sim.simulate import Sim


GHOST_RUN = "ghost"  # runs that were never submitted


@dataclass
class _Lazy:
    token: str
    due_ms: int
    times: int  # completions still to send (2: duplicated)
    forge: bool  # try a forged token first


@dataclass
class Outside:
    sim: Sim
    rng: random.Random
    lazy: dict[tuple[str, str], _Lazy] = field(default_factory=dict)
    retried: set[str] = field(default_factory=set)  # runs whose operator's retry was sent
    _taken: int = 0  # entries of workloads.LAZY seen
    evidence: dict[str, Any] = field(
        default_factory=lambda: {
            "cancels": [],  # run ids a cancel was sent for
            "forged_accepted": [],  # forged completions the client did not refuse
            "injected": [],  # message ids of stray messages (their dead letters are expected)
            "bad_results": [],  # event ids of results with the wrong value names
            "disturbed": set(),  # runs whose outcome a stray message may change
            "ghost_ids": set(),  # runs never submitted that stray messages named
        }
    )

    # --- operators -----------------------------------------------------------------------

    def control(self, kind: str, rid: str) -> bool:
        """One operator action through the client; False if the client refused it."""
        c = self.sim.client
        try:
            if kind == "cancel":
                c.cancel(rid, "sim", wait_s=None)
                self.evidence["cancels"].append(rid)
            elif kind == "resume":
                c.resume(rid, "sim", wait_s=None)
            elif kind == "retry":
                if rid not in self.sim.retry_once or rid in self.retried:
                    return False  # only the operator's one retry (a second would differ)
                c.retry(rid, "sim", wait_s=None)
                self.retried.add(rid)
        except RunStateError:
            return False
        return True

    def operator_retries(self) -> None:
        """The operators of gated runs retry each once, when it is FAILED."""
        for rid in sorted(self.sim.retry_once - self.retried):
            status = self.sim._status(rid)
            if status == FAILED:
                self.control("retry", rid)
            elif status in RUN_TERMINAL:
                self.retried.add(rid)  # ended otherwise (cancelled): nothing to retry

    def will_retry(self, rid: str) -> bool:
        return rid in self.sim.retry_once and rid not in self.retried

    def waiting(self) -> bool:
        """An operator still has a retry to make (the run may yet fail)."""
        return any(self.sim._status(r) == FAILED for r in self.sim.retry_once - self.retried)

    # --- outside systems of lazy tasks ---------------------------------------------------

    def _collect(self) -> None:
        """Each execution of a lazy body hands its token out (again: a later attempt waits too)."""
        now = self.sim.world.clock.ms
        new, self._taken = workloads.LAZY[self._taken :], len(workloads.LAZY)
        for rid, task, token in new:
            key = (rid, task)
            if rid not in self.sim.run_ids or (key in self.lazy and self.lazy[key].times > 0):
                continue
            delay = self.rng.choice([0, 0, 0, 200, 1500, 5000, 40000])
            self.lazy[key] = _Lazy(
                token, now + delay, 2 if self.rng.random() < 0.25 else 1, self.rng.random() < 0.2
            )

    def lazy_due(self) -> int | None:
        self._collect()
        return min((z.due_ms for z in self.lazy.values() if z.times > 0), default=None)

    def complete_one(self) -> None:
        """Send the completion of one lazy task that is due (the scheduler picked this)."""
        now = self.sim.world.clock.ms
        due = sorted(k for k, z in self.lazy.items() if z.times > 0 and z.due_ms <= now)
        if not due:
            return
        key = self.rng.choice(due)
        z = self.lazy[key]
        c = self.sim.client
        if z.forge:
            z.forge = False
            forged = z.token.rsplit(".", 1)[0] + "." + "A" * 22
            try:
                c.complete(forged, workloads.lazy_value(key[1]) + 1, wait_s=None)
            except InvalidToken:
                pass
            except AckflowError:
                self.evidence["forged_accepted"].append(f"{key}: refused, but not as an invalid token")
            else:
                self.evidence["forged_accepted"].append(f"{key}: a forged token was accepted")
            self.sim.world.struck("lazy_forged")
            return
        z.times -= 1
        if z.times > 0:
            z.due_ms = now + self.rng.choice([0, 100, 3000])
            self.sim.world.struck("lazy_duplicate")
        try:
            c.complete(z.token, workloads.lazy_value(key[1]), wait_s=None)
        except (StoreUnavailable, BrokerUnavailable):  # an outage: it tries again, as a caller would
            z.times += 1
            z.due_ms = now + 1000
        except AckflowError:  # already completed, or its run ended: refused, nothing sent
            pass

    def early_complete(self, rid: str) -> bool:
        """Complete the run's lazy tasks that are scheduled or running, before their bodies
        defer (or before they ran at all): the completion is the attempt's result."""
        c = self.sim.client
        sent = False
        for name, spec in c.specs(rid).items():
            if spec.fn != "s_lazy" or (rid, name) in self.lazy:
                continue
            raw = self.sim.world.mem.read(rid, {keys.TASKS: [name]})[keys.TASKS][0]
            if raw is None or TaskState.decode(raw).status not in (SCHEDULED, RUNNING):
                continue
            try:
                c.complete(c.token_for(rid, name), workloads.lazy_value(name), wait_s=None)
                sent = True
            except AckflowError:
                pass
        return sent

    # --- stray messages ------------------------------------------------------------------

    def inject(self, kind: str, n: int) -> bool:
        seed = self.sim.seed
        if kind == "stray":  # an event of a run that does not exist
            rid = f"{GHOST_RUN}-{seed}-{n}"
            self.evidence["ghost_ids"].add(rid)
            ev = self.rng.choice(
                [
                    Event(
                        protocol.TASK_SUCCEEDED,
                        f"result:{rid}:t1:1",
                        rid,
                        "t1",
                        1,
                        {"worker": "x", "values": {}},
                    ),
                    Event(protocol.RUN_CANCEL, f"{protocol.RUN_CANCEL}:{rid}:x", rid, body={"by": "x"}),
                    Event(protocol.TASK_COMPLETE, f"complete:{rid}:t1:1:x", rid, "t1", 1, {"by": "x"}),
                    Event(protocol.TASK_STARTED, f"started:{rid}:t1:1", rid, "t1", 1, {"worker": "x"}),
                ]
            )
            self._send(ENGINE_QUEUE, ev.id, protocol.encode(ev), expect_dead=False)
        elif kind == "malformed":  # a body nobody can decode, on the engine or a task queue
            q = ENGINE_QUEUE if n % 2 else task_queue("default")
            self._send(q, f"junk-{seed}-{n}", b"\xc1not msgpack" * (1 + n % 3), expect_dead=True)
        elif kind == "engine_poison":  # its processing kills the engine, every time
            rid = f"{POISON_RUN}-{seed}-{n}"
            self.evidence["ghost_ids"].add(rid)
            ev = Event(protocol.TASK_STARTED, f"started:{rid}:t1:1", rid, "t1", 1, {"worker": "x"})
            self._send(ENGINE_QUEUE, ev.id, protocol.encode(ev), expect_dead=True)
        elif kind == "bad_result":  # a result naming values its task does not provide
            return self._bad_result(n)
        self.sim.world.struck(kind)
        return True

    def _send(self, queue: str, mid: str, body: bytes, expect_dead: bool) -> None:
        if expect_dead:
            self.evidence["injected"].append(mid)
        self.sim.world.hub.route(Outgoing(queue, mid, body))

    def _bad_result(self, n: int) -> bool:
        mem = self.sim.world.mem
        for rid in self.sim.run_ids:
            for name, raw in sorted(mem.read_all(rid, keys.TASKS).items()):
                st = TaskState.decode(raw)
                if st.status not in (SCHEDULED, RUNNING) or keys.item_of(name) is not None:
                    continue
                ev = Event(
                    protocol.TASK_SUCCEEDED,
                    f"{protocol.result_id(rid, name, int(st.attempt))}:bad{n}",
                    rid,
                    name,
                    int(st.attempt),
                    {"worker": "buggy", "values": {"not_provided": n}},
                )
                self.evidence["bad_results"].append(ev.id)
                self.evidence["disturbed"].add(rid)
                self._send(ENGINE_QUEUE, ev.id, protocol.encode(ev), expect_dead=False)
                self.sim.world.struck("bad_result")
                return True
        return False
