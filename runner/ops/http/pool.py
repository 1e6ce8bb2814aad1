"""A bounded pool of clients for the HTTP server's request threads."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runner.client import Client

POOL_SIZE = 8  # clients (and threads) for pages; as many again for completions


class ClientPool:
    """Clients are not thread-safe; request threads borrow one each."""

    def __init__(self, factory: Callable[[], Client], size: int = POOL_SIZE) -> None:
        self.factory = factory
        self._free: queue.LifoQueue[Client] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def client(self) -> Iterator[Client]:
        with self._slots:
            try:
                c = self._free.get_nowait()
            except queue.Empty:
                c = self.factory()
                with self._lock:
                    self._all.append(c)
            try:
                yield c
            finally:
                self._free.put(c)

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()
