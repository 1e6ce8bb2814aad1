"""A plain redis-py client for what tests keep in Redis themselves (gates, execution records),
on one server or on a Redis Cluster, from an ackflow Redis URL."""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from runner.config import is_cluster_url, redis_nodes


def raw_redis(url: str, **kwargs: Any) -> Any:
    """`redis.Redis` for ``redis://`` URLs; `RedisCluster` for ``redis+cluster://`` ones."""
    if is_cluster_url(url):
        nodes = [ClusterNode(h, p) for h, p in redis_nodes(url)]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **kwargs)
    return redis.Redis.from_url(url, **kwargs)
