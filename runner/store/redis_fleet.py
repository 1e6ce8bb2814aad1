"""The fleet's records in Redis: workers' heartbeats and the task queues runs use. Part of the
Redis adapter: `RedisStore` (and the cluster store) answer `beat_worker`, `workers`,
`note_queues` and `noted_queues` with it.

Keys (under the index root, so on a cluster all in the one slot of ``{<prefix>}``):
  <root>:workers        hash  worker id -> its latest record (msgpack, runner.presence)
  <root>:workers:heard  zset  worker id by the time it was last heard (ms)
  <root>:queues         zset  task queue name by the time a run last used it (ms)
Old entries are dropped by the writes and reads that come across them; nothing else expires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from runner.store.redis_errors import REDIS_ERRORS, translate


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Fleet:
    """Workers' records and noted queues for one store."""

    def __init__(self, client: Callable[[], redis.Redis], root: str) -> None:
        self._client = client  # the store's (lazily made) client: one server's, or a cluster's
        self._workers = f"{root}:workers"
        self._heard = f"{root}:workers:heard"
        self._queues = f"{root}:queues"

    def _forget_silent(self, before_ms: int) -> None:
        client = self._client()
        old = [_text(w) for w in client.zrangebyscore(self._heard, "-inf", f"({before_ms}")]
        if old:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(self._heard, *old)
            pipe.hdel(self._workers, *old)
            pipe.execute()

    def beat_worker(self, worker_id: str, record: bytes, now_ms: int, keep_s: int) -> None:
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.hset(self._workers, worker_id, record)
            pipe.zadd(self._heard, {worker_id: now_ms})
            pipe.execute()
            self._forget_silent(now_ms - keep_s * 1000)
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def workers(self, now_ms: int, keep_s: int) -> list[tuple[str, bytes, int]]:
        try:
            client = self._client()
            heard: Any = client.zrangebyscore(self._heard, now_ms - keep_s * 1000, "+inf", withscores=True)
            ids = [_text(w) for w, _ in heard]
            records: list[Any] = client.hmget(self._workers, ids) if ids else []
        except REDIS_ERRORS as e:
            raise translate(e) from e
        out = [
            (w, rec, int(at))
            for (w, (_, at), rec) in zip(ids, heard, records, strict=True)
            if rec is not None
        ]
        return sorted(out)

    def note_queues(self, queues: Sequence[str], now_ms: int) -> None:
        if not queues:
            return
        try:
            self._client().zadd(self._queues, dict.fromkeys(queues, now_ms))
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def noted_queues(self, since_ms: int) -> list[str]:
        try:
            client = self._client()
            client.zremrangebyscore(self._queues, "-inf", f"({since_ms}")
            return sorted(_text(q) for q in client.zrange(self._queues, 0, -1))
        except REDIS_ERRORS as e:
            raise translate(e) from e
