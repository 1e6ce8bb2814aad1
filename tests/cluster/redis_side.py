"""The Redis side of `make cluster`, pluggable: one Redis of our own by default, or a Redis
Cluster of our own (3 masters, a replica each) once the store takes ``redis+cluster://`` URLs
(issue 14). ``ACKFLOW_CLUSTER_REDIS`` chooses: ``auto`` (the default: the cluster if the store
takes its URL), ``single`` or ``cluster`` (which fails if the store cannot)."""

from __future__ import annotations

import os
from pathlib import Path

from runner.config import Config
from runner.connect import open_store
from runner.errors import ConfigError, StoreError, StoreUnavailable
from tests.chaos.services import OwnRedis, OwnRedisCluster
from tests.helpers.net import free_port

MODE_ENV = "ACKFLOW_CLUSTER_REDIS"


def cluster_store_support() -> str | None:
    """None if the store takes ``redis+cluster://`` URLs, else why not. Asked of a closed
    port: a store that understands the scheme fails to reach it (StoreUnavailable); one that
    does not refuses the URL itself."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    try:
        store = open_store(Config(redis_url=url, connect_timeout_s=0.5))
    except ConfigError as e:
        return f"the config refuses redis+cluster:// ({e})"
    try:
        store.ping()
    except StoreUnavailable:
        return None
    except (StoreError, ValueError) as e:
        return f"the store does not take redis+cluster:// URLs ({e})"
    finally:
        store.close()
    return None


class RedisSide:
    """The store's Redis (``url``) and the Redis the chaos flows record executions in
    (``records_url``); ``cluster`` is the Redis Cluster when there is one, else None."""

    def __init__(self, workdir: Path, mode: str | None = None) -> None:
        mode = mode or os.environ.get(MODE_ENV, "auto")
        if mode not in ("auto", "single", "cluster"):
            raise ValueError(f"{MODE_ENV} must be auto, single or cluster, not {mode!r}")
        why = cluster_store_support() if mode != "single" else f"{MODE_ENV}=single"
        if mode == "cluster" and why:
            raise RuntimeError(f"{MODE_ENV}=cluster, but {why}")
        self.no_cluster: str | None = why
        """Why the Redis Cluster scenarios are skipped (None: they run)."""
        self.records = OwnRedis(workdir)
        self.cluster = OwnRedisCluster(workdir, masters=3, replicas=1) if why is None else None

    @property
    def url(self) -> str:
        return self.cluster.url if self.cluster is not None else self.records.url

    @property
    def records_url(self) -> str:
        return self.records.url

    def describe(self) -> str:
        if self.cluster is None:
            return f"one redis-server (Redis Cluster scenarios skipped: {self.no_cluster})"
        return f"Redis Cluster, {self.cluster.masters} masters + {self.cluster.replicas} replica each"

    def start(self) -> None:
        self.records.start()
        if self.cluster is not None:
            self.cluster.start()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.records.stop()
