"""H1 end to end: the messages that killed every engine and worker they reached, published
raw to real queues, are dead-lettered with a decode reason; the processes keep serving."""

from __future__ import annotations

import pytest

from runner.broker.kombu import KombuBroker
from runner.client import Client
from runner.config import Config
from tests.helpers import flows
from tests.helpers.processes import Processes
from tests.helpers.wire import KILLERS

pytestmark = pytest.mark.services


def test_messages_that_killed_consumers_are_dead_lettered_and_both_keep_serving(
    procs: Processes, client: Client, config: Config
) -> None:
    engine = procs.engine()
    worker = procs.worker("-c", "2")
    raw = KombuBroker(config)
    try:
        raw.declare(["task.default"])
        for queue in ("engine", "task.default"):
            for body, _ in KILLERS:
                raw.publish_raw(queue, body)
        # Both queues are first in, first out: once a run submitted after the junk has
        # finished, each process has taken (and settled) every bad message before its own.
        rid = client.submit(flows.chain(3), {"v0": 0})
        info = procs.wait(client, rid)
        assert (info.status, info.result) == ("SUCCESS", {"v3": 3}), procs.logs()
        assert engine.poll() is None and worker.poll() is None, procs.logs()
        dead = []
        while (d := raw.get("dead")) is not None:
            dead.append(d)
            raw.ack(d)
        got = sorted((str(d.headers["x-ackflow-queue"]), d.body) for d in dead)
        assert got == sorted((q, b) for q in ("engine", "task.default") for b, _ in KILLERS)
        for d in dead:
            [reason] = [r for b, r in KILLERS if b == d.body]
            assert reason in d.headers["x-ackflow-reason"], d.headers
        # Still serving after the barrage: another run goes through, nothing died.
        again = client.submit(flows.chain(2), {"v0": 5})
        assert procs.wait(client, again).result == {"v2": 7}
        procs.assert_alive()
    finally:
        raw.close()
