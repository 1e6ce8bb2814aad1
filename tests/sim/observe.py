"""What the simulator records for the checker: the state it peeks at after each engine step
(`check_timeouts`, on the memory store) and the evidence of a finished simulation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner import protocol
from runner.decide.records import TaskState
from runner.states import RUNNING, SCHEDULED
from runner.store import keys
from tests.sim import workloads
from tests.sim.world import World

if TYPE_CHECKING:
    from tests.sim.simulate import Sim


def check_timeouts(world: World, timeouts: dict[str, dict[str, float]]) -> None:
    """A running task with a timeout always has its timeout timer (or the timer fired)."""
    mem = world.mem
    for rid, tasks in timeouts.items():
        run = mem._runs.get(rid, {})
        for name in tasks:
            raw = run.get(keys.TASKS, {}).get(name)
            if raw is None:
                continue
            st = TaskState.decode(raw)
            if st.status != RUNNING:
                continue
            tid = protocol.timer_id(protocol.TIMER_TIMEOUT, rid, name, int(st.attempt))
            if tid not in run.get(keys.TIMERS, {}) and (rid, tid) not in world.seen["fired"]:
                world.seen["violations"].append(
                    f"{rid}: {name} attempt {st.attempt} is RUNNING with no timeout timer"
                )


def evidence(sim: Sim) -> dict[str, Any]:
    """What the checker reads of a finished simulation, besides the runs' outcomes."""
    mem = sim.world.mem
    return {
        "active_tasks": {  # map elements too
            r: sorted(
                n
                for n, raw in mem.read_all(r, keys.TASKS).items()
                if TaskState.decode(raw).status in (SCHEDULED, RUNNING)
            )
            for r in sim.run_ids
        },
        "history": {r: sim.client.history(r) for r in sim.run_ids},
        "specs": {r: sim.client.specs(r) for r in sim.run_ids},
        "outbox": {r: dict(mem._runs.get(r, {}).get(keys.OUTBOX, {})) for r in sim.run_ids},
        "timers": sorted(k for k in mem._timers if k[0] in sim.run_ids),
        "undelivered": sim.world.hub.undelivered(),
        "dead": [(m.message_id, m.headers, m.body) for m, _ in sim.world.hub.queues.get("dead", ())],
        "executions": list(workloads.EXECUTIONS),
        "exec_info": list(workloads.EXEC_INFO),
        "seen": sim.world.seen,
        "outside": sim.outside.evidence,
        "retry_once": sorted(sim.retry_once),
        "ghosts": {
            r: parts
            for r in sorted(sim.outside.evidence["ghost_ids"])
            if (parts := [p for p in (keys.META, keys.TASKS, keys.APPLIED) if mem.read_all(r, p)])
            or (parts := ["history"] if mem.history(r) else [])
        },
    }
