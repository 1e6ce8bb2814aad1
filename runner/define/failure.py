"""`Failure`: what a revert handler receives as ``failure`` when its own task failed.

TaskFlow passes its revert a ``Failure`` as ``result`` when the atom itself failed; ackflow
keeps ``result`` for what the task returned and passes the failure under its own name, to
the handlers that ask for it (a ``failure`` parameter), so that handlers written before get
exactly what they always got.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Failure(NamedTuple):
    """How the task's last attempt failed: the exception's type, message and traceback as the
    worker reported them, the type's class names (its bases too) and the attempt."""

    type: str
    message: str
    traceback: str = ""
    types: tuple[str, ...] = ()
    attempt: int = 0

    def check(self, *names: str) -> str | None:
        """The first of ``names`` that the failed exception is an instance of (by class name,
        as TaskFlow's ``Failure.check``), or None."""
        return next((n for n in names if n in self.types or n == self.type), None)

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> Failure:
        """A failure as a revert request carries it (the task's stored error)."""
        return cls(
            type=str(d.get("type", "")),
            message=str(d.get("message", "")),
            traceback=str(d.get("traceback", "")),
            types=tuple(str(t) for t in d.get("types") or ()),
            attempt=int(d.get("attempt") or 0),
        )
