"""Failover between RabbitMQ nodes, for real: a second node of our own (tests/chaos/services.py's
`OwnRabbit`: own node name, ports and data directory; needs root here) next to the shared one.

The two nodes are independent, not a cluster: what a killed node held is gone with it, so the
test shows the processes' side of failover — an engine, a worker and a client given
``dead;own;shared`` connect past the dead first host, finish a run on our node, and when it is
killed with ``kill -9`` they all reconnect to the next host and finish the next run there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.client import Client
from runner.config import Config, redact_url
from tests.chaos.services import OwnRabbit
from tests.helpers import flows
from tests.helpers.net import free_port
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services


@pytest.fixture
def own_rabbit(tmp_path: Path) -> Iterator[OwnRabbit]:
    why = OwnRabbit.unavailable()
    if why:
        pytest.skip(f"cannot start a RabbitMQ node of our own: {why}")
    node = OwnRabbit(tmp_path)
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.mark.timeout(240)
def test_processes_fail_over_to_the_next_host_when_their_node_is_killed(
    config: Config, own_rabbit: OwnRabbit, tmp_path: Path
) -> None:
    dead = f"amqp://guest:pw-dead@127.0.0.1:{free_port()}//"
    cfg = config.with_(broker_url=f"{dead};{own_rabbit.url};{config.broker_url}", broker_host_order="listed")
    procs = Processes(cfg, tmp_path)
    client = Client.from_config(cfg)
    try:
        procs.engine(env={"ACKFLOW_BROKER_HOST_ORDER": "listed"})
        procs.worker("-c", "2", env={"ACKFLOW_BROKER_HOST_ORDER": "listed"})

        first = client.submit(flows.diamond_flow, {"x": 1})
        info = procs.wait(client, first, timeout_s=60)
        assert (info.status, info.result) == ("SUCCESS", {"d": [5, 10, 15]}), procs.logs()
        # all three went past the dead first host to our node
        on_own = f"connected to broker {redact_url(own_rabbit.url)} (host 2 of 3)"
        assert connected_hosts(procs) == {"engine": [on_own], "worker": [on_own]}

        own_rabbit.kill()  # SIGKILL of the node's Erlang VM, by its pid file

        second = client.submit(flows.diamond_flow, {"x": 1})  # the client reconnects too
        info = procs.wait(client, second, timeout_s=60)
        assert (info.status, info.result) == ("SUCCESS", {"d": [5, 10, 15]}), procs.logs()
        on_shared = f"connected to broker {redact_url(config.broker_url)} (host 3 of 3)"
        assert connected_hosts(procs) == {"engine": [on_own, on_shared], "worker": [on_own, on_shared]}
        assert "pw-dead" not in procs.logs()
    finally:
        client.close()
        procs.stop_all()


def connected_hosts(procs: Processes) -> dict[str, list[str]]:
    """Each process's "connected to broker" lines, in order."""
    out: dict[str, list[str]] = {}
    for log in sorted(procs.logdir.glob("*.log")):
        name = log.name.split("-")[0]
        out[name] = re.findall(r"connected to broker \S+ \(host \d of \d\)", log.read_text(errors="replace"))
    return out
