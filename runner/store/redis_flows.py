"""The flow registry of the Redis stores: each registered flow's versions (digest -> packed
spec, a hash per flow) and an index of the latest version of each (name -> packed info). Part
of the Redis adapter: `RedisStore` (and the cluster store, where both live under the index
hash tag, one slot, so a registration is one MULTI) answers the registry calls with it. The
task catalogue (`runner.client.catalogue`) is kept the same way, under its own keys."""

from __future__ import annotations

from collections.abc import Callable

import redis

from runner.store import keys
from runner.store.redis_errors import REDIS_ERRORS, translate


class FlowRegistry:
    """Registered flows (or, with the catalogue's keys, tasks) for one store prefix (``root``:
    `keys.index_root`)."""

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        root: str,
        index: Callable[[str], str] = keys.flows_index,
        versions: Callable[[str, str], str] = keys.flow_versions,
    ) -> None:
        self._client = client
        self._root = root
        self._index, self._versions = index, versions

    def put(self, name: str, digest: str, spec: bytes, info: bytes) -> None:
        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.hset(self._versions(self._root, name), digest, spec)
            pipe.hset(self._index(self._root), name, info)
            pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def get(self, name: str, digest: str) -> bytes | None:
        try:
            raw = self._client().hget(self._versions(self._root, name), digest)
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return _bytes(raw) if raw is not None else None

    def latest(self) -> dict[str, bytes]:
        try:
            raw = self._client().hgetall(self._index(self._root))
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return {(k.decode() if isinstance(k, bytes) else str(k)): _bytes(v) for k, v in raw.items()}

    def digests(self, name: str) -> list[str]:
        try:
            raw = self._client().hkeys(self._versions(self._root, name))
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in raw)


def _bytes(value: bytes | str) -> bytes:
    """A reply as bytes (redis-py's stubs say bytes | str; with decode_responses off it is bytes)."""
    return value if isinstance(value, bytes) else value.encode()
