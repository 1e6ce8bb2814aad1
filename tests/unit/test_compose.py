"""The compose files a Docker user starts (compose/): no Docker here, so they are read as YAML
and checked for what the README and the files' own usage lines promise: the names, ports and
URLs, one Erlang cookie for the RabbitMQ nodes, every node in the peer discovery list, and a
Redis Cluster of 3 masters with a replica each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE / name).read_text())
    assert isinstance(data, dict)
    return data


def published(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port."""
    out = {}
    for p in service.get("ports", []):
        host, _, container = str(p).rpartition(":")
        if host:
            out[int(host)] = int(container)
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in COMPOSE.glob("*.yml")))
def test_every_compose_file_is_yaml_with_services(name: str) -> None:
    assert load(name)["services"]


def test_the_rabbitmq_cluster_is_three_nodes_sharing_a_cookie_that_find_each_other() -> None:
    text = (COMPOSE / "docker-compose.rabbitmq-cluster.yml").read_text()
    services = load("docker-compose.rabbitmq-cluster.yml")["services"]
    assert sorted(services) == ["rabbit1", "rabbit2", "rabbit3"]
    assert {s["image"] for s in services.values()} == {"rabbitmq:3.13-management"}
    assert len({s["environment"]["ERLANG_COOKIE"] for s in services.values()}) == 1
    assert all(".erlang.cookie" in " ".join(s["entrypoint"]) for s in services.values())
    # every node is in the classic-config list, under the host name the service has
    conf = (COMPOSE / "rabbitmq" / "cluster.conf").read_text()
    listed = set(re.findall(r"classic_config\.nodes\.\d+ = rabbit@(\S+)", conf))
    assert listed == {s["hostname"] for s in services.values()}
    assert "peer_discovery_backend = classic_config" in conf
    for s in services.values():
        assert "./rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in s["volumes"]
    # the URL list of the usage line reaches AMQP on each node
    ports = {host: (name, c) for name, s in services.items() for host, c in published(s).items()}
    [urls] = re.findall(r"ACKFLOW_BROKER_URL='([^']+)'", text)
    hosts = [int(u.rsplit(":", 1)[1].rstrip("/")) for u in urls.split(";")]
    assert [ports[h] for h in hosts] == [("rabbit1", 5672), ("rabbit2", 5672), ("rabbit3", 5672)]
    assert ports[15672] == ("rabbit1", 15672)


def test_the_redis_cluster_is_three_masters_with_a_replica_each_created_once() -> None:
    text = (COMPOSE / "docker-compose.redis-cluster.yml").read_text()
    services = load("docker-compose.redis-cluster.yml")["services"]
    nodes = {n: s for n, s in services.items() if n != "redis-cluster-create"}
    assert sorted(nodes) == [f"redis{i}" for i in range(1, 7)]
    for i, (name, s) in enumerate(sorted(nodes.items()), start=1):
        port = 7000 + i
        assert s["hostname"] == name and s["environment"]["REDIS_PORT"] == str(port)
        assert published(s) == {port: port, 10000 + port: 10000 + port}  # client and bus port
        command = " ".join(s["command"])
        for flag in ("--cluster-enabled yes", "--cluster-port 1$$REDIS_PORT", "--appendonly yes"):
            assert flag in command
    create = services["redis-cluster-create"]
    assert create["restart"] == "no"
    assert set(create["depends_on"]) == set(nodes)
    command = " ".join(create["command"])
    assert "--cluster-replicas 1" in command and "--cluster-yes" in command
    assert re.findall(r"getent hosts (redis\d) \| cut -d' ' -f1\):(\d+)", command) == [
        (f"redis{i}", str(7000 + i)) for i in range(1, 7)
    ]
    # the seeds of the usage line's URL are nodes of this file
    [url] = re.findall(r"ACKFLOW_REDIS_URL='([^']+)'", text)
    assert url.startswith("redis+cluster://")
    for seed in url.removeprefix("redis+cluster://").split(","):
        host, _, port = seed.partition(":")
        assert nodes[host]["environment"]["REDIS_PORT"] == port


# --- deployment files (issue 19, item 9) ------------------------------------------------


def _commands() -> set[str]:
    from runner.ops.cli import load_plugins

    return set(load_plugins().commands)


def test_the_production_compose_file_keeps_state_durable_and_secrets_out() -> None:
    text = (COMPOSE / "docker-compose.production.yml").read_text()
    services = load("docker-compose.production.yml")["services"]
    assert {"rabbitmq", "redis", "engine", "worker", "serve"} <= set(services)
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--appendfsync always" in redis and "noeviction" in redis
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any(v.endswith(":/var/lib/rabbitmq") for v in services["rabbitmq"]["volumes"])
    env = services["engine"]["environment"]
    assert env["ACKFLOW_QUEUE_TYPE"] == "quorum" and env["ACKFLOW_REQUIRE_DURABLE_STORE"] == "true"
    # every password and secret is required from the environment, none written here
    for value in [
        env["ACKFLOW_BROKER_URL"],
        env["ACKFLOW_SECRET"],
        services["serve"]["environment"]["ACKFLOW_OPERATOR_TOKEN"],
    ]:
        assert re.search(r"\$\{[A-Z_]+:\?", value), value
    assert "guest" not in text
    for name in ("engine", "worker", "serve"):
        assert services[name]["command"][0] in _commands()


def test_the_dockerfile_runs_the_cli_as_a_user_from_files_that_exist() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ackflow"]' in text
    [cmd] = re.findall(r'^CMD \["(\w+)"', text, re.M)
    assert cmd in _commands()
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    root = COMPOSE.parent
    for src in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M):
        for part in src.split():
            assert (root / part).exists(), part


@pytest.mark.parametrize("unit", sorted(p.name for p in (COMPOSE / "systemd").glob("*.service")))
def test_each_systemd_unit_runs_an_ackflow_command_and_stops_it_gracefully(unit: str) -> None:
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(COMPOSE / "systemd" / unit)
    service = parser["Service"]
    exe, command = service["ExecStart"].split()[:2]
    assert exe.endswith("/ackflow") and command in _commands()
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "always"
    assert service["EnvironmentFile"] == "/etc/ackflow/ackflow.env"
    assert service["User"] != "root"


def test_the_example_settings_are_settings_ackflow_knows() -> None:
    from dataclasses import fields

    from runner.config import Config

    names = {"ACKFLOW_" + f.name.upper() for f in fields(Config)} | {"ACKFLOW_CONFIG"}
    env_file = (COMPOSE / "systemd" / "ackflow.env.example").read_text()
    keys = re.findall(r"^#? ?(ACKFLOW_[A-Z_]+)=", env_file, re.M)
    assert keys and set(keys) <= names
    cfg = Config.from_env({}, config_file=str(COMPOSE / "ackflow.example.toml"))
    assert cfg.require_durable_store and cfg.queue_type == "quorum"
