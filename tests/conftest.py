"""Shared fixtures: services (found as DESIGN §9 says), per-test prefixes, CLI processes."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from runner.config import Config
from tests import services as svc
from tests.helpers.processes import ROOT, Processes

# Hypothesis: `make test` tries a bounded number of inputs per property (derandomized under CI, so a
# landing is reproducible); `make fuzz` (HYPOTHESIS_PROFILE=fuzz) tries many more, from fresh seeds.
_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.register_profile(
    "default",
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=_CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "compose" / "docker-compose.yml")


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> svc.Services:
    found, problems = svc.find_without_docker(dict(os.environ))
    if found is not None:
        return found
    if svc.docker_engine_answers():
        ds = request.getfixturevalue("docker_services")  # only now: compose up
        ip = request.getfixturevalue("docker_ip")
        broker = f"amqp://guest:guest@{ip}:{ds.port_for('rabbitmq', 5672)}//"
        red = f"redis://{ip}:{ds.port_for('redis', 6379)}/0"
        ds.wait_until_responsive(
            lambda: svc.broker_ok(broker) is None and svc.redis_ok(red) is None, timeout=120, pause=1
        )
        return svc.Services(broker, red, "docker")
    message = "RabbitMQ/Redis not available: " + "; ".join(problems)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture
def config(services: svc.Services) -> Iterator[Config]:
    """A config with a prefix of its own: no test sees another's queues or keys."""
    cfg = Config(
        broker_url=services.broker_url,
        redis_url=services.redis_url,
        prefix=f"t-{uuid.uuid4().hex[:10]}",
        heartbeat_s=10,
        secret=f"test-secret-{uuid.uuid4().hex}",
    )
    yield cfg
    from runner.connect import open_broker, open_store

    broker = open_broker(cfg)
    try:
        broker.connect()
        broker._declared |= {"task.default", "task.other"}
        broker.delete_queues()
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass
    finally:
        broker.close()
    store = open_store(cfg)
    store.delete_prefix()
    store.close()


@pytest.fixture
def client(config: Config) -> Iterator[Any]:
    """A client on the test's own prefix, against the real services."""
    from runner.client import Client

    c = Client.from_config(config)
    yield c
    c.close()


@pytest.fixture
def procs(config: Config, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    p = Processes(config, tmp_path)
    yield p
    p.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        sys.stderr.write(p.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis Cluster of our own for the session: 3 masters with a replica each (at least two
    masters, so a script touching a key it was not given fails; replicas, so commits WAIT)."""
    from tests.chaos.services import OwnRedisCluster

    why = OwnRedisCluster.unavailable()
    if why is not None:
        if _CI:
            pytest.fail(f"Redis Cluster tests need redis-server: {why} (CI=true: a failure)")
        pytest.skip(why)
    cluster = OwnRedisCluster(tmp_path_factory.mktemp("rc"), masters=3, replicas=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
