"""The CLI against RabbitMQ + Redis, an engine and a worker: a task's result holding its own
completion token and a URL with a password, and a failure whose message holds the token, shown
by every command that prints them — text and ``--json`` — with neither secret in the output
(L3); results with bytes or mixed-type keys shown, not a traceback (L9)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.client import Client
from runner.config import Config
from runner.ops import cli
from runner.ops.cli import common
from tests.helpers import cli_flows
from tests.helpers.processes import Processes, cli_env

pytestmark = pytest.mark.services

PASSWORD = "S3cr3tPW"
main = cli.load_plugins()


def invoke(config: Config, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=cli_env(config))


@pytest.fixture
def running(procs: Processes) -> Processes:
    procs.engine()
    procs.start("worker", "tests.helpers.cli_flows")
    return procs


def test_no_cli_output_shows_a_token_or_a_password(
    running: Processes, config: Config, client: Client
) -> None:
    submitted = invoke(
        config, "submit", "tests.helpers.cli_flows:leak_flow", "-i", "x=1", "--run-id", "leak-1", "--wait"
    )
    assert submitted.exit_code == 0, submitted.output + running.logs()
    failed = invoke(
        config,
        "submit",
        "tests.helpers.cli_flows:leak_error_flow",
        "-i",
        "x=1",
        "--run-id",
        "fail-1",
        "--wait",
    )
    assert failed.exit_code == common.EXIT_FAILED, failed.output + running.logs()

    # the secrets are really there, in what the commands read
    token = client.token_for("leak-1", "leak")
    assert client.status("leak-1").result == {"leaked": {"tok": token, "url": cli_flows.URL}}
    fail_token = client.token_for("fail-1", "leak_in_error")
    error = client.status("fail-1").error
    assert error is not None and fail_token in error["message"] and fail_token in error["traceback"]

    outputs = {"submit leak-1 --wait": submitted, "submit fail-1 --wait": failed}
    for rid in ("leak-1", "fail-1"):
        for command in (
            ["status", rid],
            ["status", rid, "--json"],
            ["history", rid],
            ["history", rid, "--json"],
        ):
            outputs[" ".join(command)] = invoke(config, *command)
    outputs["list --json"] = invoke(config, "list", "--json")
    outputs["list"] = invoke(config, "list")

    for name, result in outputs.items():
        shown = result.output + result.stderr
        assert result.exit_code in (0, common.EXIT_FAILED), f"{name}: {shown}"
        assert token not in shown and fail_token not in shown, f"{name} shows a token:\n{shown}"
        assert PASSWORD not in shown, f"{name} shows the password:\n{shown}"
    # ... and they still show what they are for, with the secrets replaced
    assert '"tok": "af1.<token>"' in outputs["status leak-1"].output
    assert "redis://:***@db:6379/0" in outputs["status leak-1"].output
    assert "ValueError: cannot use af1.<token> on redis://:***@db:6379/0" in outputs["status fail-1"].output
    assert "Traceback" in outputs["status fail-1"].output  # the task's, scrubbed
    as_json = json.loads(outputs["status leak-1 --json"].output)
    assert as_json["result"] == {"leaked": {"tok": "af1.<token>", "url": "redis://:***@db:6379/0"}}
    failed_json = json.loads(outputs["status fail-1 --json"].output)
    assert (
        "af1.<token>" in failed_json["error"]["message"]
        and "af1.<token>" in failed_json["error"]["traceback"]
    )
    for line in outputs["history fail-1 --json"].output.splitlines():
        json.loads(line)


@pytest.mark.parametrize(
    "value,shown",
    [
        ({b"k": 1}, {"k": 1}),
        ({1: "a", "b": 2}, {"1": "a", "b": 2}),
    ],
    ids=["bytes keys", "mixed keys"],
)
def test_status_shows_results_with_keys_json_cannot_hold(
    running: Processes, config: Config, client: Client, value: dict[Any, Any], shown: dict[str, Any]
) -> None:
    rid = client.submit(cli_flows.echo_flow, {"x": value}, run_id="keys-1")
    info = running.wait(client, rid)
    assert info.status == "SUCCESS" and info.result == {"echoed": value}
    text = invoke(config, "status", rid)
    assert text.exit_code == 0, text.output
    assert "result: " + json.dumps({"echoed": shown}, sort_keys=True) in text.output
    as_json = invoke(config, "status", rid, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["result"] == {"echoed": shown}
