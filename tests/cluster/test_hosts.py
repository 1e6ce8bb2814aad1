"""A broker URL list against the shared RabbitMQ and closed ports: every connect tries every
host, processes start at random places in the list, a lost connection moves on to the next
host, and the host connected is logged with its password hidden."""

from __future__ import annotations

import logging
import uuid

import pytest

from runner.broker import ENGINE_QUEUE, Outgoing
from runner.broker.kombu import KombuBroker
from runner.config import Config, redact_url
from runner.errors import BrokerUnavailable
from tests import services as svc
from tests.helpers.net import free_port

pytestmark = pytest.mark.services


def closed(password: str = "guest") -> str:
    """A URL nothing listens at (connecting is refused at once)."""
    return f"amqp://guest:{password}@127.0.0.1:{free_port()}//"


def listed(config: Config, *urls: str) -> Config:
    return config.with_(broker_url=";".join(urls), broker_host_order="listed")


def test_every_host_of_a_list_is_tried_wherever_the_live_one_is(config: Config) -> None:
    # kombu alone tried two hosts per connect: the third of "dead;dead;live" never
    for live_at in range(3):
        urls = [closed(), closed()]
        urls.insert(live_at, config.broker_url)
        broker = KombuBroker(listed(config, *urls))
        try:
            broker.connect()
            assert broker.connected_host == shown(config.broker_url)
            broker.publish([Outgoing(ENGINE_QUEUE, f"m-{live_at}", b"x")])
        finally:
            broker.close()


def test_the_host_connected_is_logged_and_no_password_of_the_list(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = listed(config, closed("pw-dead-1"), closed("pw-dead-2"), config.broker_url)
    caplog.set_level(logging.INFO, logger="ackflow.broker")
    broker = KombuBroker(cfg)
    try:
        broker.connect()
    finally:
        broker.close()
    connected = [r.getMessage() for r in caplog.records if "connected to broker" in r.getMessage()]
    assert connected == [f"connected to broker {shown(config.broker_url)} (host 3 of 3)"]
    assert "pw-dead" not in caplog.text


def test_an_unreachable_list_names_every_host_and_no_password(config: Config) -> None:
    urls = [closed("pw-dead-1"), closed("pw-dead-2"), closed("pw-dead-3")]
    broker = KombuBroker(config.with_(broker_url=";".join(urls)))
    with pytest.raises(BrokerUnavailable) as caught:
        broker.connect(attempts=2)
    text = str(caught.value)
    assert text.startswith("cannot reach any of 3 broker hosts: ")
    for url in urls:
        port = url.rsplit(":", 1)[1]
        assert f"127.0.0.1:{port}" in text
    assert "pw-dead" not in text


def other_name(config: Config) -> str:
    """The shared node's URL under another host name (one node, two names: which name a
    process connected through shows where in the list it started)."""
    if "@127.0.0.1:" not in config.broker_url:
        pytest.skip("the shared broker is not on 127.0.0.1")
    return config.broker_url.replace("@127.0.0.1:", "@localhost:")


def test_processes_start_at_random_hosts_of_the_list(config: Config) -> None:
    other = other_name(config)
    cfg = config.with_(broker_url=f"{config.broker_url};{other}")
    seen = set()
    for _ in range(30):  # both turn up unless 30 fair coin flips all agree (p = 2**-29)
        broker = KombuBroker(cfg)
        try:
            broker.connect()
            seen.add(broker.connected_host)
        finally:
            broker.close()
    assert seen == {shown(config.broker_url), shown(other)}


def test_a_lost_connection_moves_on_to_the_next_host(config: Config) -> None:
    if not svc.rabbitmqctl("status"):
        pytest.skip("rabbitmqctl cannot reach the shared node (needed to close a connection)")
    urls = [config.broker_url, other_name(config)]
    marker = f"hosts-{uuid.uuid4().hex[:8]}"
    broker = KombuBroker(config.with_(broker_url=";".join(urls)), role=marker)
    try:
        broker.connect()
        first = broker.connected_host
        assert svc.close_connections(marker) == 1
        while broker.poll(1.0) or broker.connected_host is not None:
            pass  # until the broker notices its connection closed
        broker.publish([Outgoing(ENGINE_QUEUE, "after", b"x")])  # connects again
        assert {first, broker.connected_host} == {shown(u) for u in urls}
    finally:
        broker.close()


def shown(url: str) -> str:
    """A URL as logs show it."""
    return redact_url(url)
