"""The fault schedule of a seed: which fault strikes before which scheduler step (`plan`).

Process faults (crash, freeze, connection loss, long tasks, preemption by another engine),
broker and store faults (duplicates, delays, outages, lost replies, clock jumps), operators'
control events (pause, resume, cancel, retry: `tests.sim.outside`), early completions of
lazy tasks, and stray messages (events of runs that do not exist, undecodable bodies, engine
poison, results with the wrong value names).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAULT_KINDS = (
    "crash",
    "freeze",
    "conn_loss",
    "conn_loss_mid_step",
    "long_task",
    "duplicate",
    "delay",
    "store_outage",
    "lost_reply",
    "clock_jump",
    "pause",
    "resume",
    "cancel",
    "retry",
    "early_complete",
    "preempt",
    "stray",
    "malformed",
    "engine_poison",
    "bad_result",
    "flaky_conn",
)
RUN_TARGETED = ("pause", "resume", "cancel", "retry", "early_complete")


@dataclass(frozen=True)
class Fault:
    step: int  # applied before this scheduler step
    kind: str
    target: str = ""  # a process (E0, W1, ...) or a run index (control events)
    arg: int = 0

    def describe(self) -> str:
        return f"{self.kind}@{self.step}" + (f":{self.target}" if self.target else "") + f"={self.arg}"


def plan(seed: int, steps: int, procs: list[str], runs: int) -> list[Fault]:
    """A fault schedule over ``steps`` scheduler steps, from the seed."""
    rng = random.Random(f"faults:{seed}")
    out = []
    for _ in range(rng.randint(1, 10)):
        kind = rng.choice(FAULT_KINDS)
        step = rng.randrange(max(1, steps))
        if kind == "cancel" and rng.random() < 0.5:  # half as often: it ends the run
            kind = "pause"
        if kind == "crash":
            out.append(Fault(step, kind, rng.choice(procs), rng.randint(1, 40)))
        elif kind == "freeze":
            out.append(Fault(step, kind, rng.choice(procs), rng.choice([500, 3000, 8000, 20000])))
        elif kind == "conn_loss":
            out.append(Fault(step, kind, rng.choice(procs)))
        elif kind == "conn_loss_mid_step":
            out.append(Fault(step, kind, rng.choice(procs), rng.randint(1, 40)))
        elif kind == "long_task":  # a worker's tasks take long; maybe its heartbeats stall too
            worker = rng.choice([p for p in procs if p.startswith("W")])
            out.append(
                Fault(
                    step,
                    kind,
                    worker,
                    rng.choice([3000, 7000, 8000, 9000, 10000, 30000]) * rng.choice([1, -1]),
                )
            )
        elif kind == "flaky_conn":  # a link drops at each of the next confirms (engine: many;
            # worker: a few, and it may die just after: tests/sim/world.SimBroker.confirm)
            proc = rng.choice(procs)
            out.append(Fault(step, kind, proc, rng.randint(12, 16) if proc[0] == "E" else rng.randint(1, 3)))
        elif kind == "preempt":  # E0 may step at each of E1's next calls (E1 takes one event
            # at a time, so others stay queued: tests/sim/simulate._EngineProc)
            out.append(Fault(step, kind, "E1", rng.randint(100, 2000)))
        elif kind in ("duplicate", "delay"):
            out.append(Fault(step, kind, "", rng.randint(1, 5)))
        elif kind in ("store_outage", "lost_reply"):
            out.append(Fault(step, kind, "", rng.randint(1, 6)))
        elif kind == "clock_jump":
            out.append(Fault(step, kind, "", rng.choice([200, 1000, 5000])))
        elif kind in ("stray", "malformed", "engine_poison", "bad_result"):
            out.append(Fault(step, kind, "", rng.randint(1, 1000)))
        else:
            out.append(Fault(step, kind, str(rng.randrange(runs))))
    if rng.random() < 0.3:  # the engines step into each other's steps all along
        out.append(Fault(0, "preempt", "E1", 10**6))
    return sorted(out, key=lambda f: (f.step, f.kind, f.target, f.arg))
