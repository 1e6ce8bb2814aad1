"""How many replicas must hold a commit before it counts (Redis WAIT), and saying so when
they did not: the durability half of the Redis store's writes. Part of the Redis adapter."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import redis
import redis.exceptions

from runner.config import Config

log = logging.getLogger("ackflow.store")

_RECHECK_S = 5.0  # auto mode: how long a server's replica count is trusted
_SHORT_LOG_EVERY_S = 10.0


class Replicas:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._seen: dict[str, tuple[float, int]] = {}  # server -> (when, replicas wanted)
        self._last_short_log = -_SHORT_LOG_EVERY_S

    def wanted(self, node: redis.Redis) -> int:
        """``redis_wait_replicas``, or in auto mode (-1) 1 if ``node`` has replicas, looked up
        at most every few seconds."""
        n = self._config.redis_wait_replicas
        if n >= 0:
            return n
        kw = node.connection_pool.connection_kwargs
        name = f"{kw.get('host')}:{kw.get('port')}:{kw.get('path', '')}"
        seen = self._seen.get(name)
        now = time.monotonic()
        if seen is None or now - seen[0] > _RECHECK_S:
            try:
                info: Mapping[str, Any] = node.info("replication")
            except redis.exceptions.ResponseError:  # INFO not permitted (a managed Redis)
                info = {}
            seen = (now, 1 if int(info.get("connected_slaves", 0)) > 0 else 0)
            self._seen[name] = seen
        return seen[1]

    def check(self, acked: Any, wanted: int) -> None:
        """After a WAIT: a shortfall (a replica down or lagging past the timeout) is logged,
        not an error — the commit holds on the master; only a failover before the replica
        catches up could lose it (README, "Running on clusters")."""
        if not isinstance(acked, Exception) and int(acked) >= wanted:
            return
        now = time.monotonic()
        if now - self._last_short_log >= _SHORT_LOG_EVERY_S:
            self._last_short_log = now
            log.warning(
                "a commit reached %s of %d replicas within %d ms: it holds on the master, but a"
                " failover before the replicas catch up would lose it",
                acked, wanted, self._config.redis_wait_timeout_ms,
            )  # fmt: skip
