"""The nack race of a RabbitMQ node kill (README: Running on clusters), end to end on the shared
node: a worker whose publishing channel is nacked forever — as one opened while the engine
queue's new leader was being elected — must still get its result confirmed and the run
finished, on a new channel of the same connection, instead of retrying on the stuck channel
without end. Every confirm of the stuck channel is read as a nack (an injection at the
channel's incoming basic.ack frames); a new channel is confirmed as usual."""

from __future__ import annotations

import time

import pytest
from amqp import spec

from runner.client import Client
from runner.config import Config
from runner.connect import open_broker, open_store
from runner.engine import Engine
from tests.e2e import flows
from workers.loop import Worker

pytestmark = pytest.mark.services

PATIENCE_S = 60.0  # a deadline for the run to finish, never a measured duration


def test_a_worker_whose_publishing_channel_is_nacked_forever_still_finishes_the_run(
    config: Config, client: Client
) -> None:
    store = open_store(config)
    engine_broker = open_broker(config, role="engine", attempts=1)
    worker_broker = open_broker(config, role="worker", attempts=1)
    try:
        engine = Engine(config, store, engine_broker)
        engine.start()
        worker = Worker(config, worker_broker, concurrency=1, name="stuck", store=store)
        worker.start()
        stuck = worker_broker._pub
        stuck._callbacks[spec.Basic.Ack] = stuck._on_basic_nack
        connection = worker_broker._conn
        rid = client.submit(flows.chain(2), {"v0": 1})
        deadline = time.monotonic() + PATIENCE_S
        while client.status(rid).status not in ("SUCCESS", "FAILED"):
            assert time.monotonic() < deadline, f"run {rid} stalled: {client.status(rid).status}"
            engine.run_once(0.05)
            worker.run_once(0.05)
        info = client.status(rid)
        assert info.status == "SUCCESS" and info.result == {"v2": 3}
        assert worker_broker._pub is not stuck  # published on a new channel...
        assert worker_broker._conn is connection  # ...of the same connection
    finally:
        worker_broker.close()
        engine_broker.close()
        store.close()
