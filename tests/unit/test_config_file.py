"""The optional TOML file of settings (issue 19, item 9): the keys of the ACKFLOW_* variables,
the environment over the file and options over both, clear errors for what is wrong, and
`ackflow config` showing every setting's value (redacted) and source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.config import Config
from runner.errors import ConfigError
from runner.ops.cli import load_plugins

main = load_plugins()


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "ackflow.toml"
    p.write_text(text)
    return str(p)


def test_the_file_under_the_environment_under_options(tmp_path: Path) -> None:
    path = write(tmp_path, 'prefix = "filep"\nlease_s = 12\nqueue_type = "classic"\n')
    cfg, src = Config.load({"ACKFLOW_CONFIG": path, "ACKFLOW_LEASE_S": "9"}, prefix="optp")
    assert (cfg.prefix, cfg.lease_s, cfg.queue_type) == ("optp", 9.0, "classic")
    assert (src["prefix"], src["lease_s"], src["queue_type"]) == (
        "option",
        "env ACKFLOW_LEASE_S",
        f"file {path}",
    )
    assert src["heartbeat_s"] == "default"


def test_keys_as_names_or_variables_at_the_top_or_in_an_ackflow_table(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'ACKFLOW_PREFIX = "a1"\n[ackflow]\nheartbeat_s = 7\nrequire_durable_store = true\n'
    )
    cfg = Config.from_env({}, config_file=path)
    assert (cfg.prefix, cfg.heartbeat_s, cfg.require_durable_store) == ("a1", 7, True)
    assert isinstance(Config.from_env({}, config_file=write(tmp_path, "lease_s = 3")).lease_s, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('prefx = "x"', "unknown setting 'prefx'; did you mean 'prefix'?"),
        ("heartbeat_s = 1.5", "heartbeat_s must be a whole number, not float"),
        ('lease_s = "30"', "lease_s must be a number, not str"),
        ("require_durable_store = 1", "require_durable_store must be true or false, not int"),
        ("prefix = ", "config file"),  # not TOML
        ('prefix = "no spaces allowed"', "prefix 'no spaces allowed' must be"),  # the usual checks
    ],
)
def test_what_is_wrong_in_the_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("(", r"\(")):
        Config.from_env({}, config_file=write(tmp_path, text))


def test_a_missing_file_is_an_error_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Config.from_env({"ACKFLOW_CONFIG": str(tmp_path / "nope.toml")})


def test_ackflow_config_shows_values_redacted_and_their_sources(tmp_path: Path) -> None:
    path = write(tmp_path, 'broker_url = "amqp://u:hunter2@h:5672//"\nsecret = "s3cr3t-value"\n')
    env = {"ACKFLOW_CONFIG": path, "ACKFLOW_PREFIX": "envp"}
    result = CliRunner().invoke(main, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "s3cr3t" not in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "amqp://u:***@h:5672//" in lines["broker_url"] and f"file {path}" in lines["broker_url"]
    assert lines["prefix"].split()[1:] == ["envp", "env", "ACKFLOW_PREFIX"]
    result = CliRunner().invoke(main, ["--prefix", "optp", "config", "--json"], env=env)
    data = json.loads(result.output)
    assert data["prefix"] == {"value": "optp", "source": "option"}
    assert data["secret"]["value"] == "***"


def test_a_bad_file_exits_2_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", write(tmp_path, "lease = 1"), "config"])
    assert result.exit_code == 2
    assert "unknown setting 'lease'" in result.output
