from __future__ import annotations

import pytest

from runner.config import Config, redact_url
from runner.errors import ConfigError


def test_from_env_reads_typed_values_and_overrides_win() -> None:
    cfg = Config.from_env(
        {"ACKFLOW_PREFIX": "p1", "ACKFLOW_DELIVERY_LIMIT": "3", "ACKFLOW_CONFIRM_TIMEOUT_S": "2.5"},
        prefix="p2",
    )
    assert (cfg.prefix, cfg.delivery_limit, cfg.confirm_timeout_s) == ("p2", 3, 2.5)


@pytest.mark.parametrize(
    "env",
    [
        {"ACKFLOW_DELIVERY_LIMIT": "many"},
        {"ACKFLOW_PREFIX": "a b"},
        {"ACKFLOW_QUEUE_TYPE": "stream"},
        {"ACKFLOW_MAX_PAYLOAD_BYTES": "0"},
    ],
)
def test_invalid_settings_are_refused_with_the_name(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Config.from_env(env)


def test_passwords_are_redacted() -> None:
    assert redact_url("amqp://guest:s3cret@host:5672//") == "amqp://guest:***@host:5672//"
    assert "s3cret" not in redact_url("redis://:s3cret@host:6379/0")
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
