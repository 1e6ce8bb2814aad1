"""ackflow's engines and workers as separate processes (as in production), each benchmark with
a prefix of its own, and the cleanup of that prefix's queues and keys."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from runner.client import Client
from runner.config import Config
from runner.connect import open_broker, open_store

WORKER_CONCURRENCY = 8


def fresh(base: Config) -> Config:
    """``base`` with a prefix no other benchmark (or test) shares."""
    return base.with_(prefix=f"bench-{uuid.uuid4().hex[:8]}")


class Cluster:
    """Engines and workers as separate processes, as in production."""

    def __init__(self, cfg: Config, engines: int = 1, workers: int = 1) -> None:
        self.cfg = cfg
        self.env = dict(
            os.environ,
            ACKFLOW_BROKER_URL=cfg.broker_url,
            ACKFLOW_REDIS_URL=cfg.redis_url,
            ACKFLOW_PREFIX=cfg.prefix,
            ACKFLOW_MAX_PAYLOAD_BYTES=str(cfg.max_payload_bytes),
            # errors only: each engine would repeat the same warnings (a Redis that is not
            # durable, say) at every start; the bench states the Redis setting once
            ACKFLOW_LOG_LEVEL="error",
        )
        self.cmd = [sys.executable, "-m", "runner.ops.cli"]
        self.engines = [self.start("engine") for _ in range(engines)]
        self.workers = [self.start("worker") for _ in range(workers)]

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return self.engines + self.workers

    def start(self, role: str) -> subprocess.Popen[bytes]:
        args = (
            ["engine"]
            if role == "engine"
            else ["worker", "runner.examples.noop", "-c", str(WORKER_CONCURRENCY)]
        )
        return subprocess.Popen([*self.cmd, *args], env=self.env)

    def pids(self) -> dict[str, list[int]]:
        """Process kind -> pids, for `runner.ops.bench.cpu`."""
        return {"engine": [p.pid for p in self.engines], "worker": [p.pid for p in self.workers]}

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            p.wait(30)

    def rss_mb(self) -> dict[str, float]:
        out = {}
        for role, procs in (("engine", self.engines), ("worker", self.workers)):
            for k, p in enumerate(procs):
                with open(f"/proc/{p.pid}/status") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
                out[f"{role}{k}"] = kb / 1024
        return out


def client(cfg: Config) -> Client:
    return Client.from_config(cfg)


def cleanup(cfg: Config) -> None:
    """Delete the prefix's queues and keys."""
    b = open_broker(cfg, attempts=1)
    b._declared |= {"task.default"}
    b.delete_queues()
    b.close()
    s = open_store(cfg)
    s.delete_prefix()
    s.close()
