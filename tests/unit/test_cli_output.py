"""L3 without services: whatever the CLI prints — results, errors, dead-letter reasons, click's
own usage errors, an unexpected traceback, JSON — shows no completion token and no URL
password. (tests/e2e/test_cli_output.py checks the commands that read RabbitMQ + Redis.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.broker import DeadLetter
from runner.client import Client
from runner.ops import cli
from runner.ops.cli import common, dlq
from tests.helpers.cli_flows import URL

NOWHERE = {
    "ACKFLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
    "ACKFLOW_REDIS_URL": "redis://127.0.0.1:1/0",
}
PASSWORD = "S3cr3tPW"
TOKEN = "af1.bGVhay0x.bGVhaw.oW6hwgi15pgOBEVuzbwXSA"
ANY_TOKEN = re.compile(r"af1\.[A-Za-z0-9_-]+\.")  # a real one; the scrubbed form is af1.<token>
main = cli.load_plugins()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--log-level", "warning", *args], env=env or NOWHERE)


def assert_no_secret(result: Result) -> None:
    shown = result.output + result.stderr
    assert PASSWORD not in shown, shown
    assert TOKEN not in shown and not ANY_TOKEN.search(shown), shown


def test_a_local_run_shows_its_result_and_error_without_secrets() -> None:
    ok = invoke("run", "tests.helpers.cli_flows:leak_flow", "-i", "x=1")
    assert ok.exit_code == 0, ok.output
    assert '"tok": "af1.<token>"' in ok.output and '"url": "redis://:***@db:6379/0"' in ok.output
    assert_no_secret(ok)
    failed = invoke("run", "tests.helpers.cli_flows:leak_error_flow", "-i", "x=1")
    assert failed.exit_code == 1, failed.output
    assert "ValueError: cannot use af1.<token> on redis://:***@db:6379/0" in failed.output
    assert_no_secret(failed)


class _DeadLetters:
    """A dead queue holding one letter, as the `DeadLetters` protocol offers it."""

    def __init__(self, letter: DeadLetter) -> None:
        self.letter = letter

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        return [self.letter]

    def show_dead(self, message_id: str) -> DeadLetter:
        return self.letter


def test_dead_letter_reasons_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    letter = DeadLetter(
        id="m-1",
        reason=f"task.failed with token {TOKEN} from {URL}",
        queue="engine",
        delivery_count=1,
        body=b"\xc1 not msgpack",
        headers={},
    )

    @contextmanager
    def dead_letters(ctx: Any) -> Iterator[_DeadLetters]:
        yield _DeadLetters(letter)

    monkeypatch.setattr(dlq, "dead_letters", dead_letters)
    for args in (["dlq", "list"], ["dlq", "show", "m-1"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "with token af1.<token> from redis://:***@db" in result.output
        assert_no_secret(result)


def test_an_unexpected_error_prints_a_scrubbed_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cls: Any, **overrides: Any) -> Any:
        raise RuntimeError(f"surprise with {TOKEN} at {URL}")

    monkeypatch.setattr(Client, "from_env", classmethod(broken))
    result = invoke("status", "run-1")
    assert result.exit_code == common.EXIT_FAILED, result.output
    assert "Traceback" in result.output and "RuntimeError: surprise with af1.<token>" in result.output
    assert_no_secret(result)


@pytest.mark.parametrize(
    "args",
    [
        ["--log-level", URL, "list"],  # an error of the group's own options
        ["submit", "tests.helpers.flows:chain10", "--timeout", URL],  # of a command's
        ["run", "tests.helpers.flows:chain10", "-i", URL],  # raised by the command itself
        ["status", URL, TOKEN],  # too many arguments
    ],
)
def test_usage_errors_quoting_a_secret_are_scrubbed(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == common.EXIT_USAGE, result.output
    assert "Error" in result.output
    assert_no_secret(result)


def test_to_json_takes_any_stored_value_and_hides_secrets_in_keys_and_values() -> None:
    value = {b"k": 1, 2: [URL, (TOKEN,)], "b": {URL: b"\x00"}, "f": float("nan")}
    out = json.loads(common.to_json(value))
    assert out == {
        "k": 1,
        "2": ["redis://:***@db:6379/0", ["af1.<token>"]],
        "b": {"redis://:***@db:6379/0": "b'\\x00'"},
        "f": "nan",
    }
