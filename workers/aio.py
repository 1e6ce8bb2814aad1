"""Async tasks: the worker's event loop thread, and one attempt of an ``async def`` task on it.

A worker runs ``async def`` tasks (and revert handlers) as coroutines on one event loop, in a
thread of its own started when the first one arrives: a worker without async tasks has no
loop. Each attempt is an asyncio task of its own, so `current_task()` (a context variable)
is its own, and a timeout, a cancelled run or a superseded attempt cancels just that
coroutine: unlike a thread, it stops at its next ``await`` and frees its slot.

Here: `EventLoop` (the thread and its loop) and `run_attempt` (the skip check, the body, the
result event). The worker's loop (workers.loop) counts the slots and publishes the results,
exactly as for threaded tasks; leases and heartbeats (workers.leases) do not tell them apart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from runner import faults, logs, metrics
from runner.define.tasks import TaskDef
from runner.protocol import Event
from runner.store import Store
from workers.execute import cancelled, execute_async
from workers.leases import Running
from workers.skip import superseded

log = logging.getLogger("ackflow.worker")

# Async tasks at once, by default. They wait on I/O, not on a thread, so many could; but each
# is one more delivery the worker holds (its prefetch window), so the default stays modest.
DEFAULT_ASYNC_CONCURRENCY = 16


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    loop.call_soon_threadsafe(fn)


class EventLoop:
    """An asyncio event loop in a daemon thread, started by the first `submit`."""

    def __init__(self, name: str = "ackflow-async") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._loop is not None

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Schedule ``coro`` on the loop (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._serve, args=(loop, ready), name=self.name, daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            # Stopped with coroutines still pending (the worker gave up waiting for them):
            # cancel them here, where their context is, rather than leave them to the
            # garbage collector, which would close them outside it.
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self, timeout_s: float = 5) -> None:
        """Stop the loop once what it runs now has been given back (the worker drains its
        async tasks first, as it does its threads); no-op if it never started."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=timeout_s)


async def run_attempt(
    r: Running, task_def: TaskDef, store: Store | None, worker: str, max_payload_bytes: int
) -> Event | None:
    """One delivery of an async task's request, on the event loop: the event that reports
    it, or None if it is skipped with nothing to report (see `superseded`).

    ``r.cancel`` is set first thing, so the heartbeats can cancel this coroutine (and only
    this one) once it exists; a cancel that came before is honoured here.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    r.cancel = lambda: _call_soon(loop, me.cancel)
    req = r.req
    with logs.about(req.run_id, req.task, req.attempt):
        try:
            # one store read, in a thread: a blocking call here would hold every async task
            skipped = await asyncio.to_thread(superseded, store, req, r.delivery.delivery_count, worker)
            if skipped is not None:
                return skipped or None
            if r.ctx.cancel_requested:
                return cancelled(req, worker, r.ctx)
            started = time.perf_counter()
            result = await execute_async(req, task_def, worker, max_payload_bytes, r.ctx)
        except asyncio.CancelledError:
            if not r.ctx.cancel_requested:
                raise  # not ours: the loop is going away
            return cancelled(req, worker, r.ctx)
        finally:
            r.cancel = None
        outcome = result.kind.rpartition(".")[2]
        metrics.TASK_SECONDS.labels(req.fn, outcome).observe(time.perf_counter() - started)
        if outcome == "failed":
            log.info("task %s failed: %s", req.task, result.body["error"]["type"])
        faults.hit("worker.after_execute")
        return result
