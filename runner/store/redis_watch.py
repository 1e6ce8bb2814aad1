"""Waiting for a run's change on Redis pub/sub: `RedisWatch`, over plain channels (one server)
or sharded ones (a Redis Cluster routes them to the slot's shard). Part of the Redis adapter."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runner.errors import StoreUnavailable
from runner.store.redis_errors import REDIS_ERRORS


class RedisWatch:
    """`runner.store.Watch`: each commit publishes on the run's channel ('!' first when its
    status changed); ``next_message(timeout)`` returns the next publication's data or None."""

    def __init__(self, pubsub: Any, next_message: Callable[[float], Any]) -> None:
        self._pubsub = pubsub
        self._next = next_message

    def wait(self, timeout_s: float, status_only: bool = False) -> bool:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        changed = False
        try:
            while True:
                left = 0.0 if changed else deadline - time.monotonic()  # changed: drain the burst
                data = self._next(max(left, 0.0))
                if data is None:
                    if changed or time.monotonic() >= deadline:
                        return changed
                    continue
                raw = data if isinstance(data, bytes) else str(data).encode()
                changed = changed or not status_only or raw.startswith(b"!")
        except REDIS_ERRORS as e:
            raise StoreUnavailable(f"redis watch failed: {e}") from e

    def close(self) -> None:
        self._pubsub.close()


def _data(msg: Any, kind: bytes) -> Any:
    if msg is None:
        return None
    t = msg.get("type", b"")
    return msg["data"] if (t if isinstance(t, bytes) else str(t).encode()) == kind else None


def watch_channel(client: Any, channel: str) -> RedisWatch:
    """A watch on a plain pub/sub channel (one Redis server)."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    return RedisWatch(pubsub, lambda t: _data(pubsub.get_message(timeout=t), b"message"))


def watch_shard_channel(client: Any, channel: str) -> RedisWatch:
    """A watch on a sharded channel (SSUBSCRIBE; a Redis Cluster, Redis 7+)."""
    pubsub = client.pubsub()
    pubsub.ssubscribe(channel)
    return RedisWatch(
        pubsub,
        lambda t: _data(pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=t), b"smessage"),
    )
