"""Kill the engine or the worker at every fault point of DESIGN §5; the run must end exactly
as a run without faults: same state, same result, same transitions, none of them twice, no
event applied by two commits, nothing dead-lettered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from runner import faults
from runner.broker.kombu import KombuBroker
from runner.client import Client, RunInfo
from runner.config import Config
from runner.local import LocalRuntime
from tests.helpers import flows
from tests.helpers.checks import reapplied_events, transitions
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services

FLOW = flows.fanout(3)  # a fan-out and a join: 5 tasks, 11 events
INPUTS = {"n": 1}

# (point, the hit that crashes). Hit 1 of an engine point is the run.submit event, whose
# commit has an outbox (the first task request); later hits land mid-run, on events with
# and without an outbox. Worker hits count tasks (and batches of results).
POINTS = [
    (point, nth)
    for point, hits in [
        ("engine.after_decode", (1, 4)),
        ("engine.after_commit", (1, 3, 6)),
        ("engine.after_publish", (1, 2)),
        ("engine.after_mark_sent", (1, 2)),
        ("engine.before_ack", (1, 5)),
        ("worker.after_execute", (1, 3)),
        ("worker.after_publish", (1, 3)),
        ("worker.before_ack", (1, 3)),
    ]
    for nth in hits
]


def test_every_fault_point_is_tested() -> None:
    """(The schedule's points: tests/chaos/test_schedule_crashes.py.)"""
    assert {p for p, _ in POINTS} == set(faults.POINTS) - set(faults.SCHEDULE_POINTS)


def outcome(info: RunInfo) -> tuple[str, object, dict[str, tuple[str, int]]]:
    return info.status, info.result, {n: (t.status, t.attempt) for n, t in info.tasks.items()}


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[object, Counter[tuple[str, str, str, int]]]]:
    with LocalRuntime() as rt:
        info = rt.run(FLOW, INPUTS, timeout_s=60)
        yield outcome(info), transitions(rt.client.history(info.run_id))


@pytest.mark.parametrize("point,nth", POINTS, ids=[f"{p}:{n}" for p, n in POINTS])
def test_crash_at_fault_point_then_restart(
    point: str,
    nth: int,
    procs: Processes,
    client: Client,
    config: Config,
    reference: tuple[object, Counter[tuple[str, str, str, int]]],
) -> None:
    fault = {"ACKFLOW_FAULTS": f"{point}:crash:{nth}"}
    is_engine = point.startswith("engine.")
    victim = procs.engine(env=fault if is_engine else None)
    other = procs.worker("-c", "2", env=None if is_engine else fault)
    if not is_engine:
        victim, other = other, victim
    rid = client.submit(FLOW, INPUTS)
    assert victim.wait(timeout=60) == 137, procs.logs()  # it died at the fault point
    procs.retire(victim)
    assert f"fault point {point}: crash" in procs.logs()
    if is_engine:
        procs.engine()
    else:
        procs.worker("-c", "2")
    info = procs.wait(client, rid)
    ref_outcome, ref_transitions = reference
    assert outcome(info) == ref_outcome
    history = client.history(rid)
    got = transitions(history)
    assert max(got.values()) == 1, f"a transition applied twice: {got}"
    assert got == ref_transitions
    assert reapplied_events(history) == {}, "an event applied by more than one commit"
    assert client.store.read_all(rid, "outbox") == {}, "an outbox entry was never confirmed"
    broker = KombuBroker(config)
    try:
        assert broker.depth("dead") == 0, "a message was dead-lettered"
    finally:
        broker.close()
