"""A worker's task pool in the simulator: submitted tasks wait until the simulator runs one."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class SimPool(Executor):
    """A worker's task pool: submitted tasks wait until the simulator runs one."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs.append((fn, args))
        return Future()

    def run_one(self, rng: random.Random) -> None:
        fn, args = self.jobs.pop(rng.randrange(len(self.jobs)))
        fn(*args)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.jobs.clear()
