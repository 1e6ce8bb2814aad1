"""Child runs: a task starts another flow as a run of its own and waits for it, holding nothing.

```python
@task(provides="invoice")
def bill(order: dict) -> ChildRun:
    return start_child(billing_flow, {"order_id": order["id"]})
```

The task goes WAITING (no worker thread, no broker delivery), the engine starts the child run
in the same commit, and when the child finishes its result (its outputs, as a mapping) becomes
the task's result — its failure, the task's failure, with the task's retry policy (each retry
starts a new child). The child's id is derived from the parent's run, task and attempt, so a
redelivered request never starts two. Cancelling the parent cancels its waiting children.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.errors import FlowDefinitionError

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
MAX_RUN_ID = 128


@dataclass(frozen=True)
class ChildRun:
    """What a task returns to start a child run: the flow (a `Flow` or compiled `FlowSpec`)
    and its inputs. The worker compiles and checks it before anything is sent."""

    flow: Any
    inputs: Mapping[str, Any] = field(default_factory=dict)


def start_child(flow: Any, inputs: Mapping[str, Any] | None = None) -> ChildRun:
    """Return this from a task to run ``flow`` with ``inputs`` as a child run and wait for it."""
    if inputs is not None and not isinstance(inputs, Mapping):
        raise FlowDefinitionError(f"start_child: inputs must be a mapping, not {type(inputs).__name__}")
    return ChildRun(flow, dict(inputs or {}))


def child_run_id(parent: str, task: str, attempt: int) -> str:
    """The id of the child run started by ``attempt`` of ``task`` in run ``parent``: the same
    for every execution of that attempt, distinct for every other (run, task, attempt)."""
    safe = _UNSAFE.sub("_", task)
    if safe != task:  # "each[0]" and a task named "each_0_" must not share a child
        safe += "-" + hashlib.sha256(task.encode()).hexdigest()[:8]
    rid = f"{parent}.{safe}.{attempt}"
    if len(rid) <= MAX_RUN_ID:
        return rid
    digest = hashlib.sha256(f"{parent}\n{task}".encode()).hexdigest()[:24]
    return f"{parent[:80]}.{digest}.{attempt}"
