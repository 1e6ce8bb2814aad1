"""Services restarted together come up in any order: an engine or a worker started while
RabbitMQ or Redis does not answer yet waits for it (jittered, logged retries, up to
``ACKFLOW_STARTUP_WAIT_S``) instead of exiting with 3 after a second or two.

The service "comes up" when a forwarder starts listening on the address the process was
given and relays to the real service: the process sees a refused connection, then a live one."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from runner.client import Client
from runner.config import Config, is_cluster_url
from tests.helpers import flows
from tests.helpers.net import Forwarder
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services


def _addr(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


@pytest.fixture
def late(config: Config) -> Iterator[dict[str, Forwarder]]:
    if is_cluster_url(config.redis_url):
        pytest.skip(
            "a TCP forwarder cannot stand in for a Redis Cluster (its nodes announce their own addresses)"
        )
    fw = {"broker": Forwarder(_addr(config.broker_url)), "redis": Forwarder(_addr(config.redis_url))}
    yield fw
    for f in fw.values():
        f.close()


def _through(config: Config, fw: dict[str, Forwarder]) -> dict[str, str]:
    b, r = urlsplit(config.broker_url), urlsplit(config.redis_url)
    return {
        "ACKFLOW_BROKER_URL": b._replace(
            netloc=f"{b.netloc.rsplit('@', 1)[0]}@127.0.0.1:{fw['broker'].port}"
        ).geturl(),
        "ACKFLOW_REDIS_URL": r._replace(netloc=f"127.0.0.1:{fw['redis'].port}").geturl(),
        "ACKFLOW_STARTUP_WAIT_S": "60",
    }


@pytest.mark.parametrize("service", ["broker", "redis"])
def test_an_engine_and_a_worker_wait_for_a_service_that_comes_up_late(
    service: str, procs: Processes, client: Client, config: Config, late: dict[str, Forwarder]
) -> None:
    other = "redis" if service == "broker" else "broker"
    late[other].start()  # the other service answers from the start
    env = _through(config, late)
    engine = procs.engine(env=env)
    worker = procs.worker("-c", "2", env=env)
    what = "cannot reach broker" if service == "broker" else "redis"
    procs.until_logged(engine, "retrying (for up to")  # it met the refusal and waits
    if service == "broker":
        procs.until_logged(worker, "retrying (for up to")
    late[service].start()
    procs.until_logged(engine, "engine started")
    procs.until_logged(worker, "started: queues")
    rid = client.submit(flows.diamond_flow, {"x": 2})
    assert client.wait(rid, timeout_s=60).status == "SUCCESS", what


def test_an_engine_and_a_worker_whose_connection_drops_as_they_start_carry_on(
    config: Config, client: Client
) -> None:
    """The broker restarts between their connect and their first declare/consume (seen in the
    chaos runs: the process exited with 3): start raises nothing, and the next poll reconnects,
    declares and consumes, so a run goes through."""
    from runner.connect import open_broker, open_store
    from runner.engine import Engine
    from workers.loop import Worker

    store = open_store(config)
    engine_broker = open_broker(config, role="engine", attempts=1)
    worker_broker = open_broker(config, role="worker", attempts=1)
    try:
        for b in (engine_broker, worker_broker):
            b._conn.connection.sock.shutdown(socket.SHUT_RDWR)  # the broker went away under it
        engine = Engine(config, store, engine_broker)
        engine.start()
        worker = Worker(config, worker_broker, concurrency=1, name="w", store=store)
        worker.start()
        rid = client.submit(flows.chain(2), {"v0": 1})
        deadline = time.monotonic() + 60
        while client.status(rid).status not in ("SUCCESS", "FAILED"):
            assert time.monotonic() < deadline, f"run {rid} stalled: {client.status(rid).status}"
            engine.run_once(0.05)  # each step waits on the broker's deliveries
            worker.run_once(0.05)
        assert client.status(rid).result == {"v2": 3}
    finally:
        worker_broker.close()
        engine_broker.close()
        store.close()
