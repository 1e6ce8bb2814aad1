"""Edge conditions: deciders the engine evaluates on a run's data, without user code.

``when("amount", ">", 100)`` on an edge ``a -> b`` lets ``b`` follow ``a`` only if the value
named ``amount`` (an input, or an output of ``a`` or of a task before it) compares so when
``a`` succeeds. A task none of whose incoming edges is taken is SKIPPED, and so is everything
reachable only through it. A condition is plain data stored in the flow spec, so engines
decide it the same way whichever of them applies the event.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import FlowDefinitionError

_BINARY: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda v, arg: v in arg,
    "not in": lambda v, arg: v not in arg,
}
_UNARY: dict[str, Callable[[Any], bool]] = {"truthy": bool, "falsy": lambda v: not v}
OPS = (*_BINARY, *_UNARY)


@dataclass(frozen=True)
class When:
    value: str
    op: str = "truthy"
    arg: Any = None

    def to_data(self) -> dict[str, Any]:
        return {"value": self.value, "op": self.op, "arg": self.arg}

    def __str__(self) -> str:
        return f"{self.value} {self.op}" + ("" if self.op in _UNARY else f" {self.arg!r}")


def when(value: str, op: str = "truthy", arg: Any = None) -> When:
    """A condition on the value named ``value``: ``when("approved")``, ``when("n", ">", 3)``.

    Operators: ``== != < <= > >= in "not in"`` (with ``arg``), ``truthy``, ``falsy``.
    """
    if not isinstance(value, str) or not value:
        raise FlowDefinitionError(f"when() needs the name of a value, not {value!r}")
    if op not in OPS:
        raise FlowDefinitionError(f"when(): unknown operator {op!r} (use one of {', '.join(OPS)})")
    if op in _UNARY and arg is not None:
        raise FlowDefinitionError(f"when(): operator {op!r} takes no argument")
    if op in ("in", "not in") and not isinstance(arg, (list, tuple, str)):
        raise FlowDefinitionError(f"when(): operator {op!r} needs a list or string argument")
    if isinstance(arg, tuple):
        arg = list(arg)
    return When(value, op, arg)


def holds(cond: Mapping[str, Any], value: Any) -> bool:
    """Evaluate a condition (as stored in a spec) on the value; a comparison that cannot be
    made (``None > 3``) is false, never an error."""
    op = cond["op"]
    try:
        if op in _UNARY:
            return bool(_UNARY[op](value))
        return bool(_BINARY[op](value, cond["arg"]))
    except TypeError:
        return False
