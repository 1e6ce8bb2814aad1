"""The line engines and workers log once they are up: versions, and the services they reached
(passwords redacted), so that a log read months later says what ran against what."""

from __future__ import annotations

import logging
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

from runner.config import Config, redact_url


class _Connected(Protocol):
    @property
    def connected_host(self) -> str | None: ...

    @property
    def server_version(self) -> str | None: ...


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def versions() -> str:
    """``ackflow 1.2.3 (Python 3.12.1, kombu 5.4.0, redis-py 5.2.1)``."""
    libs = ", ".join(f"{name} {_version(dist)}" for dist, name in (("kombu", "kombu"), ("redis", "redis-py")))
    return f"ackflow {_version('ackflow')} (Python {platform.python_version()}, {libs})"


def services(cfg: Config, broker: _Connected) -> str:
    """``broker amqp://user:***@host:5672// (RabbitMQ 3.13.7), redis redis://host:6379/0``."""
    rabbit = broker.connected_host or redact_url(cfg.broker_url)
    server = broker.server_version
    return (
        f"broker {rabbit}"
        + (f" (RabbitMQ {server})" if server else "")
        + f", redis {redact_url(cfg.redis_url)}"
    )


def log_banner(logger: logging.Logger, cfg: Config, broker: _Connected) -> None:
    logger.info("%s; connected to %s", versions(), services(cfg, broker))
