"""Local (embedded) mode: the same engine and worker over an in-process transport and store.

No broker, no Redis: one process runs an engine thread and a worker thread (with its task
pool, and an event loop thread once an ``async def`` task runs) around a `LocalHub` and a `MemoryStore`. This is what ``ackflow run`` and ``make demo``
use. Nothing is durable: a crash loses the runs, which is the point of the distributed mode.

The worker runtime lives in the ``workers`` package, which depends on ``runner`` and not the
other way round; local mode finds it through the ``ackflow.worker`` entry point, in ackflow's
own ``workers`` package even when a project has one of that name (`runner.plugins`).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from runner.client import Client, HistoryEntry, RunInfo
from runner.config import Config
from runner.connect import open_local
from runner.define.flows import Flow, FlowSpec
from runner.define.tasks import Registry
from runner.engine import Engine
from runner.errors import AckflowError
from runner.plugins import load_entry_point


def worker_class() -> Any:
    """The worker runtime class registered under the ``ackflow.worker`` entry point."""
    found = [ep for ep in entry_points(group="ackflow.worker") if ep.name == "default"]
    if not found:
        raise AckflowError(
            "the ackflow worker runtime is not installed (no 'ackflow.worker' entry point); "
            "install the package with 'pip install -e .'"
        )
    return load_entry_point(found[0])


class LocalRuntime:
    """An engine and a worker in this process; use as a context manager."""

    def __init__(
        self,
        config: Config | None = None,
        registry: Registry | None = None,
        concurrency: int = 4,
        async_concurrency: int = 16,  # the worker's default (runner cannot import workers)
    ) -> None:
        config = config or Config()
        if not config.secret:  # lazy tasks' tokens: valid for this process only
            config = config.with_(secret=secrets.token_hex(16))
        self.config = config
        self.store, self.hub = open_local()
        self.engine = Engine(self.config, self.store, self.hub.connect())
        self.worker = worker_class()(
            self.config,
            self.hub.connect(),
            registry,
            queues=["*"],
            concurrency=concurrency,
            async_concurrency=async_concurrency,
            name="local",
            store=self.store,
        )
        self.client = Client(self.config, self.store, self.hub.connect)
        self._threads: list[threading.Thread] = []
        self.server: Any = None  # set by `runner.ops.http.app.serve_local`; closed with the runtime

    def start(self) -> LocalRuntime:
        self._threads = [
            threading.Thread(target=self.engine.run, name="ackflow-engine", daemon=True),
            threading.Thread(target=self.worker.run, name="ackflow-worker", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def run(
        self,
        flow: Flow | FlowSpec,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout_s: float | None = None,
        on_history: Callable[[HistoryEntry], None] | None = None,
    ) -> RunInfo:
        """Submit a run and wait for it to finish."""
        rid = self.client.submit(flow, inputs, run_id=run_id)
        return self.client.wait(rid, timeout_s, on_history)

    def client_factory(self) -> Client:
        """A new client of this runtime (one per thread that needs one)."""
        return Client(self.config, self.store, self.hub.connect)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # joins its thread
            self.server.server_close()
            self.server.close_clients()
        self.engine.stop()
        self.worker.stop()
        self.hub.connect().wakeup()
        for t in self._threads:
            t.join(timeout=10)

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
