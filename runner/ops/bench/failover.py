"""Failover after ``kill -9``: how long the work a killed engine or worker held waits before
its next transition, with 2 engines + 2 workers and chains of 20 ms tasks in flight."""

from __future__ import annotations

import time

from runner import protocol
from runner.client import HistoryEntry
from runner.config import Config
from runner.ops.bench.procs import Cluster, cleanup, fresh
from runner.ops.bench.procs import client as make_client


def held_work_delay(role: str, pid: int, t0: float, histories: dict[str, list[HistoryEntry]]) -> float | None:
    """Ms from a kill at ``t0`` to the next transition of the work the victim held, the
    slowest of it counting; None if it held nothing (the kill measured nothing). Only one
    process is killed at a time, so whatever is redelivered after the kill was the victim's:

    - an engine held the events created before the kill and applied after it as redeliveries;
    - a worker held the tasks whose last transition before the kill was RUNNING on it, and
      the requests redelivered after it (their "started" event, sent at once on a
      redelivery, has the delivery count in its id; a quick task is otherwise never RUNNING
      in the history)."""
    delays = []
    for rid, history in histories.items():
        applied = [h for h in history if "t" in h.extra]
        if role == "engine":
            delays += [
                h.extra["t"] - t0
                for h in applied
                if h.extra.get("redelivered") and h.at_ms < t0 < h.extra["t"]
            ]
            continue
        by_task: dict[str, list[HistoryEntry]] = {}
        for h in applied:
            if h.scope == "run":
                continue
            by_task.setdefault(h.scope, []).append(h)
            if h.extra["t"] > t0 and h.event.startswith(protocol.started_id(rid, h.scope, h.attempt) + ":"):
                delays.append(h.extra["t"] - t0)
        for entries in by_task.values():
            before = [h for h in entries if h.extra["t"] <= t0]
            after = [h for h in entries if h.extra["t"] > t0]
            if (
                before
                and after
                and before[-1].new == "RUNNING"
                and str(before[-1].extra.get("worker", "")).endswith(f":{pid}")
            ):
                delays.append(after[0].extra["t"] - t0)
    return float(max(delays)) if delays else None


def failover(base: Config, kills: int) -> dict[str, list[float]]:
    """2 engines + 2 workers; while chains of 20 ms tasks are in flight, ``kill -9`` one
    engine (then one worker) and measure, per kill whose victim held work, the time from the
    kill to the next transition of that work (`held_work_delay`). A kill that held nothing
    is not counted (an engine holds an event for a few ms at a time): ``kills`` is tried,
    n = len(values) is measured. No replacement is needed for the survivors to take over
    (one is started after each measurement, to keep two of each)."""
    import signal

    from runner.examples.noop import busy_chain

    cfg = fresh(base)
    cluster = Cluster(cfg, engines=2, workers=2)
    client = make_client(cfg)
    out: dict[str, list[float]] = {"engine": [], "worker": []}
    try:
        flow = busy_chain(10).compile()
        client.wait(client.submit(flow, {"v0": 0}), 120)
        for role in ("engine", "worker"):
            for k in range(kills):
                ids = [client.submit(flow, {"v0": i}) for i in range(8)]
                first = ids[0]
                watch = client.store.watch(first)
                while len(client.history(first)) < 8:  # well under way
                    watch.wait(0.5)
                watch.close()
                group = cluster.engines if role == "engine" else cluster.workers
                victim = group[k % 2]
                victim.send_signal(signal.SIGKILL)
                t0 = time.time() * 1000
                victim.wait(30)
                for rid in ids:
                    info = client.wait(rid, 120)
                    assert info.status == "SUCCESS", info
                delay = held_work_delay(role, victim.pid, t0, {rid: client.history(rid) for rid in ids})
                if delay is not None:
                    out[role].append(delay)
                group[k % 2] = cluster.start(role)
        return out
    finally:
        client.close()
        cluster.close()
        cleanup(cfg)
