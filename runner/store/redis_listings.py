"""The run listings of the Redis stores: newest-first lists, pages and counts of runs, read
from the run, status and flow indexes (sorted sets scored by creation time). Part of the Redis
adapter: `RedisStore` (and the cluster store, whose indexes live under one hash tag) answer
`list_runs`, `page_runs` and `count_runs` with it.

An index may name a run that is gone (expired after its retention: each listing drops those
it meets) or, on a cluster, show a status a moment old (the indexes follow the commit), so
every listing checks each run's current status before it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from runner.store import keys
from runner.store.redis_errors import REDIS_ERRORS, translate

PAGE_SCAN_LIMIT = 5_000  # index entries a page view may look at when filtering by flow and status


def _text(value: Any) -> str:
    """A reply as text (redis-py's stubs say bytes | str; with decode_responses off it is bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _matches(status: Any, wanted: str | None) -> bool:
    return wanted is None or _text(status) == wanted


class RunListings:
    """Lists, pages and counts runs by status and flow for one store prefix."""

    def __init__(self, client: Callable[[], redis.Redis], prefix: str, index_root: str) -> None:
        self._client = client  # the store's (lazily made) client: one server's, or a cluster's
        self._prefix = prefix  # of the runs' own keys
        self._root = index_root  # of the indexes (keys.index_root)

    def index(self, status: str | None, flow: str | None) -> str:
        """The index a listing reads: by flow and status, by status, by flow, or all runs."""
        if status and flow:
            return keys.flow_status_index(self._root, flow, status)
        if status:
            return keys.status_index(self._root, status)
        if flow:
            return keys.flow_index(self._root, flow)
        return keys.runs_index(self._root)

    def _statuses(self, run_ids: list[str]) -> list[bytes | None]:
        """The status of each run (None: expired), in one round trip."""
        pipe = self._client().pipeline(transaction=False)
        for r in run_ids:
            pipe.hget(keys.run_key(self._prefix, r, keys.META), "status")
        return list(pipe.execute())

    def list_runs(self, status: str | None, limit: int) -> list[str]:
        index = self.index(status, None)
        client = self._client()
        try:
            ids = [_text(r) for r in client.zrevrange(index, 0, max(limit, 1) * 2 - 1)]
            if not ids:
                return []
            statuses = self._statuses(ids)
            gone = [r for r, st in zip(ids, statuses, strict=True) if st is None]
            if gone:  # runs expired after their retention: drop them from the index
                client.zrem(index, *gone)
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return [r for r, st in zip(ids, statuses, strict=True) if st is not None and _matches(st, status)][
            :limit
        ]

    def page_runs(
        self,
        status: str | None,
        flow: str | None,
        since_ms: int = 0,
        before_ms: int | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[str, int]], int | None]:
        index = self.index(status, flow)
        top: Any = f"({before_ms}" if before_ms is not None else "+inf"
        out: list[tuple[str, int]] = []
        scanned, batch, last = 0, max(limit, 1) * 2, 0
        try:
            while len(out) < limit and scanned < PAGE_SCAN_LIMIT:
                got: Any = self._client().zrevrangebyscore(
                    index, top, since_ms, start=0, num=batch, withscores=True
                )
                if not got:
                    return out, None
                scanned += len(got)
                ids = [_text(r) for r, _ in got]
                metas = self._statuses(ids)
                scores = [int(sc) for _, sc in got]
                for r, score, st in zip(ids, scores, metas, strict=True):
                    if st is None or not _matches(st, status):
                        continue  # expired after its retention; or, on a cluster, its status
                        # changed and the index does not show it yet
                    out.append((r, score))
                    if len(out) == limit:
                        return out, score
                last = int(got[-1][1])
                top = f"({last}"
                if len(got) < batch:
                    return out, None
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return out, last  # the scan limit ran out: the next page goes on from here

    def count_runs(self, status: str | None) -> int:
        try:
            return int(self._client().zcard(self.index(status, None)))
        except REDIS_ERRORS as e:
            raise translate(e) from e
