"""Which redis-py errors mean the store is unavailable for now (the engine waits them out) and
which mean a request is wrong (a `StoreError`); shared by the Redis store's calls. Part of the
Redis adapter: it imports redis-py."""

from __future__ import annotations

import redis.exceptions

from runner.errors import StoreError, StoreUnavailable

# Error replies that say "not now", never "not this": the server is out of memory (noeviction),
# a replica that was promoted away from (READONLY), loading its data, busy in a script, cut off
# from its master, unable to persist (MISCONF), without enough replicas, or a cluster that is
# down or resharding. Each is an outage: the event stays unacknowledged and comes back, where a
# StoreError would dead-letter it as though it were malformed.
TRANSIENT_REPLIES = (
    "OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "MISCONF", "NOREPLICAS", "TRYAGAIN",
    "CLUSTERDOWN", "MOVED", "ASK",
)  # fmt: skip
# redis-py turns some of those replies into classes of their own and drops the code from the text
# (a MOVED or ASK redirection reads "<slot> <host:port>").
TRANSIENT_ERRORS = (
    redis.exceptions.AskError,  # and MovedError, its subclass
    redis.exceptions.BusyLoadingError,
    redis.exceptions.MasterDownError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
)


# What a Redis call may raise: redis-py's errors, and its cluster client's own (no RedisError:
# RedisClusterException, e.g. "cannot be connected" when no seed node answers).
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


def translate(e: Exception) -> StoreError:
    """The store error a redis-py error means: `StoreUnavailable` (an outage, waited out) or
    `StoreError` (this request is wrong)."""
    if isinstance(
        e,
        (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.RedisClusterException,
        ),
    ):
        return StoreUnavailable(f"redis unavailable: {e}")
    if isinstance(e, TRANSIENT_ERRORS) or (
        isinstance(e, redis.exceptions.ResponseError) and str(e).split(" ", 1)[0] in TRANSIENT_REPLIES
    ):
        return StoreUnavailable(f"redis unavailable: {type(e).__name__}: {e}")
    return StoreError(f"redis error: {e}")
