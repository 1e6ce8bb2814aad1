"""Long work holds no delivery (G6), proven with real processes.

Leases here are 1 s and taken at once (``ACKFLOW_ACK_AFTER_S=0``), so a task waiting on a
gate runs many lease lengths. A frozen (SIGSTOP) or killed worker stops renewing: the engine
starts attempt 2 on another worker, and the frozen worker's late result is fenced.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid

import pytest

from runner.client import Client
from runner.config import Config
from runner.store import keys
from tests.helpers import semantic_flows as sf
from tests.helpers.ci import can_check
from tests.helpers.processes import Processes
from tests.services import unacked

pytestmark = pytest.mark.services

LEASE = {"ACKFLOW_ACK_AFTER_S": "0", "ACKFLOW_LEASE_S": "1", "ACKFLOW_HEARTBEAT_S": "2"}


@pytest.fixture(autouse=True)
def _redis_for_tasks(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gates and logs of semantic_flows on the test's Redis (the workers get it too)."""
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)


def key(name: str) -> str:
    return f"ackflow-test:{name}:{uuid.uuid4().hex}"


def until(client: Client, procs: Processes, run_id: str, check, what: str, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    watch = client.store.watch(run_id)
    try:
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")
            watch.wait(0.25)  # woken by the run's commits; the slice bounds lease renewals
    finally:
        watch.close()


def lease_until(client: Client, run_id: str, task: str) -> int:
    raw = client.store.read(run_id, {keys.LEASES: [task]})[keys.LEASES][0]
    return int(raw.decode().split(":")[1]) if raw else 0


def test_a_task_far_longer_than_its_lease_completes_once_holding_no_delivery(
    procs: Processes, client: Client
) -> None:
    procs.engine(env=LEASE)
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "2", env=LEASE)
    gate, log = key("gate"), key("log")
    rid = client.submit(sf.long_flow, {"gate_key": gate, "log": log})

    def leased() -> bool:
        return any("delivery acknowledged" in e.extra.get("note", "") for e in client.history(rid))

    until(client, procs, rid, leased, "the long task to take a lease")
    first = lease_until(client, rid, "long_once")
    # Renewed by heartbeats well past three lease lengths, by the same attempt.
    until(client, procs, rid, lambda: lease_until(client, rid, "long_once") > first + 3000, "3 renewals")
    if can_check(
        shutil.which("rabbitmqctl") is not None, "rabbitmqctl is needed to count unacked deliveries"
    ):
        assert unacked(f"{client.config.prefix}.task.default") == 0, "a long task must not hold its delivery"
    sf.open_gate(gate)
    info = procs.wait(client, rid, 60)
    assert info.status == "SUCCESS" and info.result == {"long_out": "late-1"}
    assert info.tasks["long_once"].attempt == 1
    assert sf.recorded(log) == ["long:1"]
    assert not any(e.extra.get("error_type") == "LeaseExpired" for e in client.history(rid))


@pytest.mark.parametrize("how", ["freeze", "kill"])
def test_a_worker_gone_past_its_lease_loses_the_task_to_a_new_attempt(
    procs: Processes, client: Client, how: str
) -> None:
    procs.engine(env=LEASE)
    w1 = procs.start("worker", "tests.helpers.semantic_flows", "-c", "1", "--name", "w1", env=LEASE)
    gate, log = key("gate"), key("log")
    rid = client.submit(sf.long_flow, {"gate_key": gate, "log": log})

    def leased() -> bool:
        return any("leased by w1" in e.extra.get("note", "") for e in client.history(rid))

    until(client, procs, rid, leased, "w1 to lease the task")
    until(client, procs, rid, lambda: sf.recorded(log) == ["long:1"], "attempt 1's body to start")
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "1", "--name", "w2", env=LEASE)
    procs.retire(w1)
    os.kill(w1.pid, signal.SIGSTOP if how == "freeze" else signal.SIGKILL)
    try:
        info = procs.wait(client, rid, 90)
        assert info.status == "SUCCESS", info
        assert info.result == {"long_out": "fresh-2"}
        assert (info.tasks["long_once"].attempt, info.tasks["long_once"].worker) == (2, "w2")
        h = client.history(rid)
        lost = [e for e in h if e.new == "FAILED"]
        assert [(e.attempt, e.extra["error_type"]) for e in lost] == [(1, "LeaseExpired")]
        assert any(
            e.attempt == 2
            and e.new == "SCHEDULED"
            and "lease of the previous attempt expired" in e.extra.get("note", "")
            for e in h
        )
        if how == "freeze":
            sf.open_gate(gate)
            os.kill(w1.pid, signal.SIGCONT)  # wakes, finishes attempt 1, reports it late

            def fenced() -> bool:
                return any(
                    "fenced: attempt 1 is not the current attempt 2" in e.extra.get("note", "")
                    for e in client.history(rid)
                )

            until(client, procs, rid, fenced, "the frozen worker's late result to be fenced", 90)
            assert client.status(rid).result == {"long_out": "fresh-2"}
        assert sf.recorded(log) == ["long:1", "long:2"]
    finally:
        if w1.poll() is None:
            os.kill(w1.pid, signal.SIGCONT)
