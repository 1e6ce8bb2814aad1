"""Retry controllers on a flow (TaskFlow's retry atoms): ``flow.linear(..., retry=Times(3))``.

When a task inside the flow (its *scope*) fails for good, the scope's completed tasks are
reverted (successors first), then the scope runs again with the controller's next value;
exhausted, the failure goes to the enclosing scope's controller, or to the run's
compensation (``revert_all=True``: always the whole run's). The controller's value of the
current attempt is provided under ``provides`` to the scope's tasks.

A controller is plain data in the compiled spec (`to_data`): engines never import user code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runner.errors import FlowDefinitionError

TIMES, FOR_EACH, PARAMETERIZED = "times", "for_each", "parameterized"


def _provides(provides: str | None) -> str | None:
    if provides is not None and (not isinstance(provides, str) or not provides.isidentifier()):
        raise FlowDefinitionError(f"a retry controller's provides= must be an identifier, not {provides!r}")
    return provides


@dataclass(frozen=True)
class Times:
    """Run the scope up to ``attempts`` times; ``provides`` holds the 1-based attempt number."""

    attempts: int = 1
    provides: str | None = None
    revert_all: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise FlowDefinitionError(f"Times(attempts=...) must be a number >= 1, not {self.attempts!r}")
        _provides(self.provides)

    def to_data(self) -> dict[str, Any]:
        return _data(TIMES, self.provides, self.revert_all, attempts=self.attempts)


@dataclass(frozen=True)
class ForEach:
    """Try the scope with each of ``values`` in turn (under ``provides``) until one attempt
    succeeds."""

    values: tuple[Any, ...]
    provides: str | None = None
    revert_all: bool = False

    def __init__(self, values: Iterable[Any], provides: str | None = None, revert_all: bool = False) -> None:
        vals = tuple(values)
        if not vals:
            raise FlowDefinitionError("ForEach needs at least one value")
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "provides", _provides(provides))
        object.__setattr__(self, "revert_all", bool(revert_all))

    def to_data(self) -> dict[str, Any]:
        return _data(FOR_EACH, self.provides, self.revert_all, values=list(self.values))


@dataclass(frozen=True)
class ParameterizedForEach:
    """Like `ForEach`, over the list held by the run input or provided value ``rebind``
    (read when the scope first starts)."""

    rebind: str
    provides: str | None = None
    revert_all: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rebind, str) or not self.rebind.isidentifier():
            raise FlowDefinitionError(f"ParameterizedForEach(rebind=...) names a value, not {self.rebind!r}")
        _provides(self.provides)

    def to_data(self) -> dict[str, Any]:
        return _data(PARAMETERIZED, self.provides, self.revert_all, rebind=self.rebind)


Controller = Times | ForEach | ParameterizedForEach


def _data(kind: str, provides: str | None, revert_all: bool, **rest: Any) -> dict[str, Any]:
    return {"kind": kind, "provides": provides or "", "revert_all": bool(revert_all), **rest}


def check_controller(retry: Any) -> Controller | None:
    if retry is None or isinstance(retry, Times | ForEach | ParameterizedForEach):
        return retry
    raise FlowDefinitionError(
        f"a flow's retry= takes Times, ForEach or ParameterizedForEach, not {type(retry).__name__}"
        " (a task's own retry policy is task.bind(retry=Retry(...)))"
    )
