"""Lazy tasks: start work elsewhere, return `defer()`, and let whoever finishes it complete it.

```python
@task(provides="approval")
def ask_for_approval(request: dict) -> Deferred:
    token = current_task().completion_token
    tickets.open(request, callback_token=token)   # the outside system keeps the token
    return defer(timeout_s=24 * 3600)             # WAITING; the worker moves on at once
```

The task goes WAITING and holds nothing: no worker thread, no broker delivery. The outside
system completes it with the token — ``Client.complete(token, result)``,
``ackflow complete TOKEN --result JSON``, or ``POST /v1/complete`` on ``ackflow serve`` —
or fails it (``Client.fail``, ``ackflow fail``, ``POST /v1/fail``). The result must fit what
the task provides, exactly as if the task had returned it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.define.context import current_task
from runner.errors import AckflowError


@dataclass(frozen=True)
class Deferred:
    """The pending marker a lazy task returns."""

    token: str
    timeout_s: float | None = None
    note: str = ""


def defer(timeout_s: float | None = None, note: str = "") -> Deferred:
    """Return this from a task to leave it WAITING for an outside completion.

    ``timeout_s``: fail the attempt (``TaskTimeout``, then the task's retry policy) if it is
    not completed in time; default: the task's own ``timeout``, else wait indefinitely.
    """
    ctx = current_task()
    if not ctx.completion_token:
        raise AckflowError("lazy tasks need ACKFLOW_SECRET set on workers, engines and clients")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not timeout_s > 0):
        raise ValueError(f"defer(timeout_s=) must be > 0, not {timeout_s!r}")
    return Deferred(ctx.completion_token, timeout_s, str(note)[:500])


def result_values(provides: list[str], unpack: bool, result: Any) -> dict[str, Any]:
    """Bind an outside result to the task's provided names, as a return value would be."""
    if not provides:
        return {}
    if not unpack:
        return {provides[0]: result}
    if isinstance(result, dict):
        missing = [p for p in provides if p not in result]
        if missing:
            raise ValueError(f"the result lacks {missing} (the task provides {provides})")
        return {p: result[p] for p in provides}
    if isinstance(result, list) and len(result) == len(provides):
        return dict(zip(provides, result, strict=True))
    raise ValueError(
        f"the result must be a mapping or a list of {len(provides)} values (the task provides {provides})"
    )
