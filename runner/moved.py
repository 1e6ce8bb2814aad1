"""Old module paths, kept for one release: ``import runner.flows`` still works, and warns.

Before the layout of issue 13, every module lived flat in ``runner/``. Code outside ackflow may
still import the old paths; each resolves to the module's new home (the same module object,
so ``runner.flows.Flow is runner.define.flows.Flow``) with a `DeprecationWarning` that names
it. One table here instead of a re-export file at every old path: the rooms stay the only
folders in ``runner/``. Removed in the release after next.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "runner.flows": "runner.define.flows",
    "runner.tasks": "runner.define.tasks",
    "runner.conditions": "runner.define.conditions",
    "runner.retry": "runner.define.retry",
    "runner.context": "runner.define.context",
    "runner.loading": "runner.define.loading",
    "runner.transitions": "runner.decide",
    "runner.control": "runner.decide.control",
    "runner.keys": "runner.store.keys",
    "runner.redis_store": "runner.store.redis",
    "runner.memory_store": "runner.store.memory",
    "runner.kombu_broker": "runner.broker.kombu",
    "runner.local_broker": "runner.broker.local",
    "runner.completion": "runner.client.completion",
    "runner.tokens": "runner.client.tokens",
    "runner.durability": "runner.engine.durability",
    "runner.http_api": "runner.ops.http.api",
    "runner.http_server": "runner.ops.http.server",
    "runner.http_auth": "runner.ops.http.auth",
    "runner.dashboard": "runner.ops.dashboard",
    "runner.bench": "runner.ops.bench",
    "runner.cli": "runner.ops.cli",
    "runner.dashboard.values": "runner.client.render",
    "workers.runtime": "workers.loop",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{self.old} is deprecated: import {self.new} (the old path goes in the release after next)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)  # its own name and spec stay as they are

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module is already imported."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(fullname, new))


def install() -> None:
    """Resolve the old paths (idempotent). Appended: a real module always wins."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
