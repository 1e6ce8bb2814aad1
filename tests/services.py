"""Where the test services are (DESIGN §9): environment URLs, then 127.0.0.1, then Docker.

Under ``CI=true`` a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import kombu
import redis

from runner.config import Config, is_cluster_url
from runner.connect import open_store

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Services:
    broker_url: str
    redis_url: str
    source: str  # "env", "local" or "docker"


def broker_ok(url: str) -> str | None:
    """None if RabbitMQ answers at the protocol level, else why not."""
    try:
        with kombu.Connection(url, connect_timeout=2) as c:
            c.ensure_connection(max_retries=1)
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not usable"
        return f"{type(e).__name__}: {e}"


def redis_ok(url: str) -> str | None:
    try:
        if is_cluster_url(url):  # a Redis Cluster (redis+cluster://): ask it as the store does
            store = open_store(Config(redis_url=url, connect_timeout_s=2))
            store.ping()
            store.close()
            return None
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def docker_engine_answers() -> bool:
    """``docker info``, not ``which docker``: the client may exist with no engine behind it."""
    if shutil.which("docker") is None or os.environ.get("ACKFLOW_TEST_DOCKER") == "0":
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_without_docker(env: dict[str, str]) -> tuple[Services | None, list[str]]:
    """The services from the environment or 127.0.0.1, or (None, reasons)."""
    broker = env.get("ACKFLOW_TEST_BROKER_URL")
    red = env.get("ACKFLOW_TEST_REDIS_URL")
    source = "env" if broker or red else "local"
    broker = broker or DEFAULT_BROKER
    red = red or DEFAULT_REDIS
    problems = []
    why = broker_ok(broker)
    if why:
        problems.append(f"RabbitMQ at {broker.split('@')[-1]}: {why}")
    why = redis_ok(red)
    if why:
        problems.append(f"Redis at {red}: {why}")
    return (None, problems) if problems else (Services(broker, red, source), [])


# --- asking a local RabbitMQ node (rabbitmqctl) ------------------------------------------


def rabbitmqctl(*args: str, node: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """Run ``rabbitmqctl -q [node] ARGS``; its output ("" if it failed or is missing)."""
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *node, *args], capture_output=True, text=True, timeout=60, env=env
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def close_connections(
    marker: str, node: tuple[str, ...] = (), env: dict[str, str] | None = None, reason: str = "test"
) -> int:
    """Close, from the broker's side, the connections whose client properties contain
    ``marker`` (our connection names); return how many closed. RabbitMQ 3.10 closes by pid."""
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "client_properties", node=node, env=env).splitlines():
        pid, _, props = line.partition("\t")
        if marker in props:
            done = subprocess.run(
                ["rabbitmqctl", "-q", *node, "close_connection", pid, reason],
                capture_output=True,
                timeout=60,
                env=env,
            )
            closed += done.returncode == 0
    return closed


def unacked(queue: str) -> int | None:
    """Unacknowledged deliveries of a queue (None if the node cannot tell)."""
    for line in rabbitmqctl("list_queues", "name", "messages_unacknowledged").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue:
            return int(parts[1])
    return None
