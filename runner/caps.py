"""Size caps on error reports, one set for every way an error gets into a run.

A task's exception (the worker), an outside failure (`Client.fail`, ``POST /v1/fail``) and
any event the engine records are cut to the same sizes: an error is stored three times (the
task's state, the history, the run's error), so an uncapped one — a 1 MB message, a forged
event — would cost megabytes of Redis per run and print megabytes in ``ackflow status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MESSAGE_CHARS = 4_000  # the start of the message is kept: it says what went wrong
TRACEBACK_CHARS = 16_000  # the end of a traceback is kept: it holds the raising frame
TYPE_CHARS = 200  # an exception type's name
TYPES_COUNT = 32  # the type and its bases, for retry policies' ``on=``


def cap_type(name: Any) -> str:
    return str(name)[:TYPE_CHARS]


def cap_message(message: Any) -> str:
    return str(message)[:MESSAGE_CHARS]


def cap_traceback(tb: Any) -> str:
    return str(tb)[-TRACEBACK_CHARS:]


def cap_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """The error's type, message, traceback and types, each within its cap."""
    etype = cap_type(error.get("type", "Error"))
    types = error.get("types")
    return {
        "type": etype,
        "message": cap_message(error.get("message", "")),
        "traceback": cap_traceback(error.get("traceback", "")),
        "types": [cap_type(t) for t in types[:TYPES_COUNT]] if isinstance(types, list) else [etype],
    }
