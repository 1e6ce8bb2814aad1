"""The simulator's Redis-backed store: the real `RedisStore` (and its Lua) on a private prefix.

`SIM_STORE=redis` makes the simulator run on this instead of the memory store, so the Lua
scripts and the Redis adapter are under the same fault hooks (`world.SimStore` wraps either).
Every store call is synchronous and takes the time as an argument, so the order of calls is
the simulator's and a seed replays the same. It offers the two views of the memory store's
internals the simulator reads (`_timers`, `_runs`) and wipes its prefix when closed.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from runner.config import Config
from runner.store import keys
from runner.store.redis import RedisStore

URL = os.environ.get("SIM_REDIS_URL", "redis://127.0.0.1:6379/0")


class SimRedisStore(RedisStore):
    """A RedisStore on ``<prefix>`` that also answers the simulator's peeks at the store."""

    def __init__(self, config: Config, tag: str) -> None:
        super().__init__(replace(config, redis_url=URL, prefix=f"{config.prefix}-{os.getpid()}-{tag}"))
        self.wipe()

    @property
    def _timers(self) -> dict[tuple[str, str], int]:
        rows = self.client.zrange(keys.timers_index(self._prefix), 0, -1, withscores=True)
        return {keys.split_timer_member(_s(m)): int(due) for m, due in rows}

    @property
    def _runs(self) -> dict[str, dict[str, dict[str, bytes]]]:
        return _Runs(self)  # type: ignore[return-value]

    def wipe(self) -> None:
        for k in self.client.scan_iter(match=f"{self._prefix}*", count=1000):
            self.client.delete(k)


class _Runs:
    def __init__(self, store: SimRedisStore) -> None:
        self._store = store

    def get(self, run_id: str, default: Any) -> dict[str, dict[str, bytes]]:
        return {keys.OUTBOX: self._store.read_all(run_id, keys.OUTBOX)}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
