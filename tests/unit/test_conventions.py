"""What a Python user expects of a tool (issue 19, item 10): ``python -m runner`` runs the CLI,
the packages are marked typed (py.typed, shipped as package data), and the log options work
after the subcommand as before it. No service is needed: the commands meet nobody."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = {
    "ACKFLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
    "ACKFLOW_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
    "ACKFLOW_STARTUP_WAIT_S": "0.3",  # one logged retry, then exit 3
}


def ackflow(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **NOWHERE}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_python_dash_m_runner_is_the_cli() -> None:
    out = ackflow("--version")
    assert out.returncode == 0 and out.stdout.strip().endswith("version 0.1.0"), out
    assert "Usage: python -m runner" in ackflow("--help").stdout


def test_the_packages_say_they_are_typed_and_ship_the_marker() -> None:
    for package in ("runner", "workers"):
        assert (ROOT / package / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert data["runner"] == ["py.typed"] and data["workers"] == ["py.typed"]


@pytest.mark.parametrize(
    "args",
    [["--log-format", "json", "engine"], ["engine", "--log-format", "json"], ["engine", "--log-format=json"]],
    ids=["before", "after", "after="],
)
def test_log_format_is_accepted_before_or_after_the_subcommand(args: list[str]) -> None:
    out = ackflow(*args)
    assert out.returncode == 3, out
    logged = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    retry = [r for r in logged if r["level"] == "WARNING" and "retrying" in r["msg"]]
    assert retry and retry[0]["logger"] == "ackflow.connect", out.stderr
    assert "hunter2" not in out.stderr


def test_log_level_after_the_subcommand_wins_and_keeps_the_groups_format() -> None:
    out = ackflow("--log-format", "json", "engine", "--log-level", "error")
    assert out.returncode == 3, out
    assert "retrying" not in out.stderr  # its WARNING is below the level asked for
    quiet = ackflow("engine", "--log-level", "warning")
    assert "WARNING ackflow.connect: cannot reach redis" in quiet.stderr  # text, as by default


def test_a_worker_takes_the_log_options_after_its_arguments_too() -> None:
    """The worker is a plugin command (loaded lazily): it gets the options all the same."""
    out = ackflow("worker", "tests.helpers.flows", "--log-format", "json", "-c", "1")
    assert out.returncode == 3, out
    logged = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert any("retrying" in r["msg"] for r in logged), out.stderr


def test_shell_completion_as_the_readme_shows_it() -> None:
    script = Path(sys.executable).parent / "ackflow"
    if not script.exists():
        pytest.skip("the ackflow script is not installed next to this Python")
    source = subprocess.run(
        [script],
        env={**os.environ, "_ACKFLOW_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "_ackflow_completion()" in source.stdout, source
    env = {
        **os.environ,
        "_ACKFLOW_COMPLETE": "bash_complete",
        "COMP_WORDS": "ackflow engine --log-format ",
        "COMP_CWORD": "3",
    }
    choices = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert choices.stdout.split() == ["plain,text", "plain,json"], choices


def test_the_startup_banner_names_versions_and_services_without_passwords() -> None:
    from runner.config import Config
    from runner.ops.cli import banner

    class Connected:
        connected_host = "amqp://app:***@rabbit-2:5672/prod"
        server_version = "3.13.7"

    cfg = Config(
        broker_url="amqp://app:s3cret@rabbit-1:5672/prod;amqp://app:s3cret@rabbit-2:5672/prod",
        redis_url="redis://:hunter2@redis:6379/0",
    )
    line = f"{banner.versions()}; connected to {banner.services(cfg, Connected())}"
    assert line.startswith("ackflow 0.1.0 (Python 3.") and ", kombu 5." in line and ", redis-py " in line
    assert line.endswith(
        "connected to broker amqp://app:***@rabbit-2:5672/prod (RabbitMQ 3.13.7), redis redis://:***@redis:6379/0"
    )

    class NotYet:
        connected_host = None
        server_version = None

    assert banner.services(cfg, NotYet()).startswith(
        "broker amqp://app:***@rabbit-1:5672/prod;amqp://app:***@"
    )
