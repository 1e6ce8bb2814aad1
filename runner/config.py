"""Settings: one frozen, validated dataclass, read from ``ACKFLOW_*`` environment variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runner.errors import ConfigError

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Config:
    """Everything an engine, worker or client needs to know; constructors take this."""

    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "ackflow"
    queue_type: str = "quorum"  # or "classic"
    delivery_limit: int = 5
    engine_prefetch: int = 32
    heartbeat_s: int = 10
    connect_timeout_s: float = 5.0
    confirm_timeout_s: float = 30.0
    reconnect_max_s: float = 5.0
    max_payload_bytes: int = 1_048_576
    retention_s: int = 7 * 24 * 3600
    commit_retries: int = 50
    ack_after_s: float = 5.0  # a task running longer gives its delivery back and takes a lease
    lease_s: float = 30.0  # a long task's lease; its worker renews it every lease_s / 3
    timer_poll_s: float = 0.5  # longest an engine waits before looking for due timers
    secret: str = ""  # signs lazy tasks' completion tokens (HMAC); the same on every process
    operator_token: str = ""  # lets the dashboard's users control runs; unset: read-only
    # Engines and serve refuse to start (exit 3) unless Redis is known durable (runner.engine.durability)
    require_durable_store: bool = False

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"prefix {self.prefix!r} must be 1-64 of [A-Za-z0-9_-]")
        if self.queue_type not in ("quorum", "classic"):
            raise ConfigError(f"queue_type must be 'quorum' or 'classic', not {self.queue_type!r}")
        for name in ("delivery_limit", "engine_prefetch", "max_payload_bytes", "commit_retries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.heartbeat_s < 0:
            raise ConfigError("heartbeat_s must be >= 0 (0 turns AMQP heartbeats off)")
        if self.retention_s < 1:
            raise ConfigError("retention_s must be at least 1")
        if self.ack_after_s < 0:
            raise ConfigError("ack_after_s must be >= 0")
        if self.lease_s <= 0 or self.timer_poll_s <= 0:
            raise ConfigError("lease_s and timer_poll_s must be > 0")
        if not isinstance(self.require_durable_store, bool):
            raise ConfigError(
                f"require_durable_store must be true or false, not {self.require_durable_store!r}"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Read ``ACKFLOW_<FIELD>`` variables; keyword overrides win over the environment."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("ACKFLOW_" + f.name.upper())
            if raw is None or raw == "":
                continue
            kind: Any = type(f.default)
            if kind is bool:  # bool("false") is True: read the words instead
                kind = _parse_bool
            try:
                values[f.name] = kind(raw)
            except ValueError as e:
                what = "boolean (true/false)" if kind is _parse_bool else kind.__name__
                raise ConfigError(f"ACKFLOW_{f.name.upper()}={raw!r} is not a valid {what}") from e
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __repr__(self) -> str:  # never print the secret
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["broker_url"] = redact_url(self.broker_url)
        shown["redis_url"] = redact_url(self.redis_url)
        shown["secret"] = "***" if self.secret else ""
        shown["operator_token"] = "***" if self.operator_token else ""
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def redact_url(url: str) -> str:
    """Return the URL with any password replaced, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
