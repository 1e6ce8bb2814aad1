"""Celery's side of the comparison: a prefork worker (``-c 2``) started for each round, chains
and chords of the same no-op tasks submitted at once from this process, every result awaited
from the Redis backend. See `celery_app` for the configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from runner.config import Config
from runner.connect import open_store
from runner.ops.bench.cpu import Meter

PROCESSES = 2


class CeleryPeer:
    """A Celery worker process and a client app on one prefix (one per bench run)."""

    def __init__(self, cfg: Config) -> None:
        from runner.ops.bench.celery_app import make_app

        self.cfg = cfg
        self.prefix = f"{cfg.prefix}-celery"
        self.app = make_app(cfg.broker_url, cfg.redis_url, self.prefix)
        self.env = dict(
            os.environ,
            ACKFLOW_BENCH_CELERY_BROKER=cfg.broker_url,
            ACKFLOW_BENCH_CELERY_BACKEND=cfg.redis_url,
            ACKFLOW_BENCH_CELERY_PREFIX=self.prefix,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # the worker's stderr, shown if it fails to start

    def start(self) -> None:
        """Start the worker and wait until it has run one task."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "runner.ops.bench.celery_app",
                "worker",
                "-c",
                str(PROCESSES),
                "-P",
                "prefork",
                "-Q",
                self.prefix,
                "-l",
                "warning",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        noop = self.app.tasks["bench.noop"]
        try:
            assert noop.delay(1).get(timeout=120) == 1
        except Exception as e:
            self.log.seek(0)
            tail = self.log.read()[-3000:].decode(errors="replace")
            raise RuntimeError(f"the Celery worker did not run a task: {e!r}\n{tail}") from e

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # warm shutdown: the pool's processes end first
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def _measure(self, submit: Any, runs: int, steps_per_run: int) -> dict[str, Any]:
        assert self.proc is not None
        meter = Meter({"celery worker": [self.proc.pid]})
        meter.start()
        start = time.perf_counter()
        results = [submit(i) for i in range(runs)]
        for r in results:
            r.get(timeout=600, disable_sync_subtasks=False)
        elapsed = time.perf_counter() - start
        return {
            "steps_per_s": runs * steps_per_run / elapsed,
            "cpu_per_1000": meter.per_1000(runs * steps_per_run),
        }

    def chains(self, runs: int, steps: int = 10) -> dict[str, Any]:
        from celery import chain

        noop = self.app.tasks["bench.noop"]

        def submit(i: int) -> Any:
            return chain(noop.s(i), *[noop.s() for _ in range(steps - 1)]).apply_async()

        return self._measure(submit, runs, steps)

    def chords(self, runs: int, width: int) -> dict[str, Any]:
        from celery import chord

        noop, join = self.app.tasks["bench.noop"], self.app.tasks["bench.join"]

        def submit(i: int) -> Any:
            return chord([noop.s(i) for _ in range(width)])(join.s())

        return self._measure(submit, runs, width + 1)

    def close(self) -> None:
        """Stop the worker, delete the queue, the exchange and the result keys."""
        self.stop()
        try:
            with self.app.connection_for_write() as conn:
                ch = conn.default_channel
                ch.queue_delete(self.prefix)
                ch.exchange_delete(self.prefix)
        finally:
            self.app.close()
            self.log.close()
            store = open_store(self.cfg)
            try:
                keys = list(store.client.scan_iter(match=f"{self.prefix}:*", count=1000))
                for i in range(0, len(keys), 500):
                    store.client.delete(*keys[i : i + 500])
            finally:
                store.close()
