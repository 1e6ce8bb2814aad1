"""``ackflow schedule`` and ``submit --at/--in`` against the real Redis (issue 17, item 5): every
command's output, and bad input refused with a clear message and exit code 2 (5: no such
schedule)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from runner.client import Client
from runner.client import flows as registry
from runner.config import Config
from runner.ops.cli import load_plugins
from tests.helpers import flows
from tests.helpers.processes import cli_env

pytestmark = pytest.mark.services
main = load_plugins()


@pytest.fixture
def cli(config: Config, client: Client) -> CliRunner:
    registry.register(client.store, flows.echo_flow.compile(), by="test")
    return CliRunner(env=cli_env(config))


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(main, list(args), catch_exceptions=False)


def test_add_list_show_pause_resume_delete(cli: CliRunner, client: Client) -> None:
    added = run(cli, "schedule", "add", "nightly", "echo_flow", "-i", "text=007", "--cron", "30 2 * * *",
                "--tz", "Europe/Paris", "--overlap", "cancel_previous", "--catchup", "all",
                "--catchup-window", "2h")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "schedule nightly: cron 30 2 * * * (Europe/Paris); next firing" in added.output
    s = client.schedules.get("nightly")
    assert s.inputs == {"text": "007"} and s.window_s == 7200 and s.overlap == "cancel_previous"
    every = run(cli, "schedule", "add", "often", "echo_flow", "-i", "text=x", "--every", "10m")
    assert every.exit_code == 0 and "every 600s" in every.output
    listed = run(cli, "schedule", "list").output.splitlines()
    assert listed[0].split()[:3] == ["SCHEDULE", "FLOW", "WHEN"]
    assert [line.split()[0] for line in listed[1:]] == ["nightly", "often"]
    rows = [json.loads(line) for line in run(cli, "schedule", "list", "--json").output.splitlines()]
    assert [r["name"] for r in rows] == ["nightly", "often"] and rows[0]["tz"] == "Europe/Paris"
    shown = run(cli, "schedule", "show", "nightly").output
    assert "overlap: cancel_previous; catch-up: all, window 7200s" in shown and "(active)" in shown
    assert json.loads(run(cli, "schedule", "show", "often", "--json").output)["every_s"] == 600
    assert "schedule nightly paused" in run(cli, "schedule", "pause", "nightly").output
    assert client.schedules.get("nightly").paused
    assert "schedule nightly active" in run(cli, "schedule", "resume", "nightly").output
    assert "schedule often deleted" in run(cli, "schedule", "delete", "often").output
    gone = run(cli, "schedule", "show", "often")
    assert gone.exit_code == 5 and "no schedule named 'often'" in gone.output


def test_submit_at_or_in_makes_a_one_shot_schedule_with_the_run_id(cli: CliRunner, client: Client) -> None:
    out = run(cli, "submit", "echo_flow", "-i", "text=hi", "--in", "1h", "--run-id", "later-1")
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "later-1" and "starts at" in out.output
    (s,) = client.schedules.list()
    assert s.run_id == "later-1" and s.name.startswith("once-") and s.when.at_ms == s.next_ms
    at = run(cli, "submit", "echo_flow", "-i", "text=hi", "--at", "2099-01-01T00:00Z")
    assert at.exit_code == 0 and len(client.schedules.list()) == 2


BAD = [
    (["schedule", "add", "s", "echo_flow", "-i", "text=a", "--cron", "* * *"], 2, "bad cron expression"),
    (["schedule", "add", "s", "echo_flow", "-i", "text=a", "--cron", "* * * * *", "--tz", "Mars/Base"], 2,
     "unknown time zone 'Mars/Base'"),
    (["schedule", "add", "s", "echo_flow", "-i", "text=a", "--every", "often"], 2, "not a duration"),
    (["schedule", "add", "s", "echo_flow", "-i", "text=a"], 2, "exactly one of"),
    (["schedule", "add", "s", "nope_flow", "--every", "1m"], 2, "no flow named 'nope_flow'"),
    (["schedule", "add", "s", "echo_flow", "-i", "txt=a", "--every", "1m"], 2, "unknown input 'txt'"),
    (["schedule", "add", "s", "echo_flow", "--every", "1m"], 2, "text"),
    (["schedule", "add", "s", "echo_flow", "-i", "text=a", "--every", "1m", "--overlap", "maybe"], 2,
     "Invalid value for '--overlap'"),
    (["schedule", "add", "s", "echo_flow", "-i", "text=a", "--every", "1m", "--catchup", "none",
      "--catchup-window", "1h"], 2, "window goes with"),
    (["schedule", "add", "s:1", "echo_flow", "-i", "text=a", "--every", "1m"], 2, "bad schedule name"),
    (["schedule", "pause", "ghost"], 5, "no schedule named 'ghost'"),
    (["schedule", "resume", "ghost"], 5, "no schedule named 'ghost'"),
    (["schedule", "delete", "ghost"], 5, "no schedule named 'ghost'"),
    (["submit", "echo_flow", "-i", "text=a", "--at", "2001-01-01T00:00Z"], 2, "in the past"),
    (["submit", "echo_flow", "-i", "text=a", "--at", "2099-01-01T00:00"], 2, "no zone"),
    (["submit", "echo_flow", "-i", "text=a", "--in", "soon"], 2, "not a duration"),
    (["submit", "echo_flow", "-i", "text=a", "--in", "1m", "--wait"], 2, "without --wait"),
    (["submit", "tests.helpers.flows:echo_flow", "-i", "text=a", "--in", "1m"], 2, "by NAME"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "says"), BAD, ids=[" ".join(a[:2] + a[-2:]) for a, _, _ in BAD])
def test_bad_input_is_refused_clearly(
    cli: CliRunner, client: Client, args: list[str], code: int, says: str
) -> None:
    out = run(cli, *args)
    assert out.exit_code == code and says in out.output, out.output
    assert client.schedules.list() == []


def test_a_name_is_taken_once(cli: CliRunner) -> None:
    args = ["schedule", "add", "dup", "echo_flow", "-i", "text=a", "--every", "1m"]
    assert run(cli, *args).exit_code == 0
    again = run(cli, *args)
    assert again.exit_code == 2 and "a schedule named 'dup' exists already" in again.output
