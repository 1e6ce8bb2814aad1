"""Which Redis errors are outages (the event waits and comes again) and which are this
request's fault (dead-lettered): a cluster's redirections and failovers must never be the
second kind, or every event of a resharded slot would be dead-lettered."""

from __future__ import annotations

import pytest
import redis.exceptions as rx

from runner.errors import StoreUnavailable
from runner.store.redis_errors import translate

# as redis-py raises them: MOVED/ASK lose their code word ("<slot> <host:port>")
OUTAGES = [
    rx.MovedError("3999 127.0.0.1:6381"),
    rx.AskError("3999 127.0.0.1:6381"),
    rx.TryAgainError("Multiple keys request during rehashing of slot"),
    rx.ClusterDownError("The cluster is down"),
    rx.MasterDownError("Link with MASTER is down"),
    rx.ClusterError("TTL exhausted."),
    rx.ReadOnlyError("You can't write against a read only replica."),
    rx.ConnectionError("Connection refused"),
    rx.TimeoutError("Timeout reading from socket"),
    rx.BusyLoadingError("Redis is loading the dataset in memory"),
    rx.ResponseError("NOREPLICAS Not enough good replicas to write."),
    rx.ResponseError("MISCONF Errors writing to the AOF file"),
    rx.RedisClusterUnreachableError("Redis Cluster cannot be connected"),  # no RedisError
]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(e).__name__ + ":" + str(e)[:20])
def test_cluster_redirections_and_failovers_are_outages(error: Exception) -> None:
    assert isinstance(translate(error), StoreUnavailable)


@pytest.mark.parametrize(
    "error",
    [
        rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        rx.DataError("x"),
    ],
)
def test_a_wrong_request_is_not_an_outage(error: Exception) -> None:
    assert not isinstance(translate(error), StoreUnavailable)
