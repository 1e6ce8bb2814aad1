"""runner.connect builds each adapter from a Config, and local mode never loads kombu/redis-py."""

from __future__ import annotations

import subprocess
import sys

from runner.broker import Broker, DeadLetters
from runner.client import Client
from runner.config import Config
from runner.connect import open_broker, open_local, open_store
from runner.store import Store


def test_open_builds_the_configured_adapters_without_connecting() -> None:
    cfg = Config(prefix="t-connect", broker_url="amqp://guest:guest@127.0.0.1:1//")
    store, broker = open_store(cfg), open_broker(cfg, role="engine")
    try:
        _store: Store = store  # the contracts, statically (mypy)
        _broker: Broker = broker
        assert type(store).__module__ == "runner.store.redis"
        assert type(broker).__module__ == "runner.broker.kombu"
        assert isinstance(broker, DeadLetters)
        client = Client.from_config(cfg)
        assert client.config is cfg and type(client.store).__module__ == "runner.store.redis"
    finally:
        broker.close()
        store.close()


def test_local_mode_and_import_runner_load_neither_kombu_nor_redis() -> None:
    code = (
        "import sys, runner, runner.connect, runner.broker, runner.store\n"
        "store, hub = runner.connect.open_local()\n"
        "hub.connect().close()\n"
        "print(sorted(m for m in ('kombu', 'redis') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_open_local_gives_a_fresh_store_and_hub() -> None:
    (s1, h1), (s2, h2) = open_local(), open_local()
    assert s1 is not s2 and h1 is not h2
    assert isinstance(h1.connect(), DeadLetters)
