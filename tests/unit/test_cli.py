"""The CLI without services: help everywhere, input parsing, local runs, exit codes."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from runner.ops.cli import load_plugins
from runner.ops.cli.common import parse_inputs
from tests import services

NOWHERE = {
    "ACKFLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
    "ACKFLOW_REDIS_URL": "redis://127.0.0.1:1/0",
}
main = load_plugins()
COMMANDS = sorted(main.commands)


def test_every_documented_command_exists() -> None:
    assert set(COMMANDS) >= {
        "run",
        "engine",
        "worker",
        "submit",
        "wait",
        "status",
        "list",
        "history",
        "topology",
        "cancel",
        "pause",
        "resume",
        "retry",
        "dlq",
        "bench",
        "complete",
        "fail",
        "serve",
        "workers",
        "queues",
    }


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_works_with_no_service_reachable(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], env=NOWHERE)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_parse_inputs() -> None:
    assert parse_inputs(["a=1", "b=x", "c=[1, 2]", 'd="7"'], '{"e": true, "a": 0}') == {
        "a": 1,
        "b": "x",
        "c": [1, 2],
        "d": "7",
        "e": True,
    }
    with pytest.raises(click.BadParameter, match="KEY=VALUE"):
        parse_inputs(["novalue"], None)
    with pytest.raises(click.BadParameter, match="JSON object"):
        parse_inputs([], "[1]")
    with pytest.raises(click.BadParameter, match="not JSON"):
        parse_inputs([], "{")


def test_run_in_local_mode_prints_progress_and_result() -> None:
    result = CliRunner().invoke(
        main, ["run", "runner.examples.demo:checkout", "-i", "order_id=42"], env=NOWHERE
    )
    assert result.exit_code == 0, result.output
    assert "task charge_card (attempt 1): RUNNING -> SUCCESS" in result.output
    assert '"tracking": "TRK-000042"' in result.output


def test_a_str_input_is_passed_as_typed_not_parsed_as_json() -> None:
    assert parse_inputs(["zip=01234", "n=7", "t=true"], None, text={"zip", "t"}) == {
        "zip": "01234",
        "n": 7,
        "t": "true",
    }
    result = CliRunner().invoke(main, ["run", "tests.helpers.flows:echo_flow", "-i", "text=42"], env=NOWHERE)
    assert result.exit_code == 0, result.output
    assert '"echoed": "42"' in result.output


def test_run_of_a_failing_flow_exits_1() -> None:
    result = CliRunner().invoke(main, ["run", "tests.helpers.flows:failing_flow", "-i", "x=1"], env=NOWHERE)
    assert result.exit_code == 1
    assert "ValueError: boom 2" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "no.such.module:flow"], "cannot import module"),
        (["run", "tests.helpers.flows:nope"], "has no attribute 'nope'"),
        (["run", "tests.helpers.flows:inc"], "not a flow"),
        (["run", "tests.helpers.flows"], "MODULE:FLOW"),
        (["run", "tests.helpers.flows:chain10"], "requires 'v0'"),
        (["run", "runner.examples.demo:checkout", "-i", "order_idd=42"], "did you mean 'order_id'?"),
        (["run", "runner.examples.demo:checkout", "-i", "order_id=abc"], "input 'order_id' must be int"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args, env=NOWHERE)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_unreachable_services_exit_3_without_leaking_the_password() -> None:
    env = dict(NOWHERE, ACKFLOW_REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["status", "some-run"], env=env)
    assert result.exit_code == 3, result.output
    assert "hunter2" not in result.output
    env = dict(NOWHERE, ACKFLOW_BROKER_URL="amqp://guest:hunter2@127.0.0.1:1//")
    result = CliRunner().invoke(main, ["topology"], env=env)
    assert result.exit_code == 3, result.output
    assert "hunter2" not in result.output
    for command in (["workers"], ["queues"]):
        env = dict(NOWHERE, ACKFLOW_REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 3, result.output
        assert "hunter2" not in result.output


def test_service_discovery_reports_what_is_missing() -> None:
    found, problems = services.find_without_docker(
        {
            "ACKFLOW_TEST_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
            "ACKFLOW_TEST_REDIS_URL": "redis://127.0.0.1:1/0",
        }
    )
    assert found is None
    assert any("RabbitMQ" in p for p in problems) and any("Redis" in p for p in problems)
