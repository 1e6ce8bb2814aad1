"""The short version of `make cluster` (tests/cluster/soak.py): kill -9 of the RabbitMQ node
that holds every engine's and worker's connection and leads the engine queue (the stall of
the scale-out findings), mid-workload. Every run must finish before the node comes back,
exactly as without the kill: nothing lost, nothing applied twice, queues drained, no dead
letters."""

from __future__ import annotations

import pytest

from tests.cluster.rig import STALL_S, Rig, failures, summary

pytestmark = pytest.mark.services

RECOVERY_BOUND_MS = 30_000  # from the kill to the next transition, generously


@pytest.mark.timeout(300)
def test_runs_go_on_when_the_node_holding_the_connections_and_leading_the_engine_queue_dies(
    rig: Rig,
) -> None:
    rec = rig.rep("connections + leader", 12)
    assert rec["unfinished_before_restart"] == 0, (
        f"{rec['unfinished_before_restart']} runs unfinished {STALL_S} s after the kill\n{rec.get('diagnosis')}"
    )
    assert failures(summary([rec])) == [], rec["report"]
    assert rec["recovery_ms"] is not None and rec["recovery_ms"] < RECOVERY_BOUND_MS
