"""Import user modules and find flows in them, with errors that say what to fix."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from runner.define.flows import Flow
from runner.define.tasks import TaskDef
from runner.errors import FlowDefinitionError


def import_module(name: str) -> Any:
    """Import a module by dotted name (or a ``path/to/file.py``), the working directory first."""
    if name.endswith(".py"):
        name = name[:-3].replace(os.sep, ".").replace("/", ".")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise FlowDefinitionError(f"cannot import module {name!r}: {e}") from None
        taken = sys.modules.get("workers")
        if e.name and e.name.startswith("workers.") and taken is not None:
            # ackflow's own `workers` package holds the name: a project's package of that name
            # cannot be imported in the same process.
            raise FlowDefinitionError(
                f"cannot import module {name!r}: {e}; the name 'workers' is taken by ackflow's "
                f"worker package ({getattr(taken, '__file__', taken)}): rename your 'workers' package"
            ) from None
        raise


def load_flow(ref: str) -> Flow:
    """``module:attribute`` -> the `Flow` there (or the flow a zero-argument function returns)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise FlowDefinitionError(f"{ref!r} is not MODULE:FLOW (for example examples.demo:order)")
    module = import_module(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise FlowDefinitionError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, TaskDef):
        raise FlowDefinitionError(f"{ref} is a task, not a flow; wrap it, e.g. flow.linear('name', {attr})")
    if inspect.isfunction(obj):
        required = [p for p in inspect.signature(obj).parameters.values() if p.default is p.empty]
        if required:
            raise FlowDefinitionError(f"{ref} is a function with parameters, not a flow")
        obj = obj()
    if not isinstance(obj, Flow):
        raise FlowDefinitionError(f"{ref} is a {type(obj).__name__}, not a flow")
    return obj


def flows_in(module: Any) -> list[Flow]:
    """The flows a module defines at its top level (by attribute, each once), in name order."""
    seen: dict[int, Flow] = {}
    for _, obj in sorted(vars(module).items()):
        if isinstance(obj, Flow) and id(obj) not in seen:
            seen[id(obj)] = obj
    return list(seen.values())
