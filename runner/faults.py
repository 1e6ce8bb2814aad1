"""Named fault-injection points, for tests that kill processes at every step (DESIGN §5).

Switched on by ``ACKFLOW_FAULTS``, a comma-separated list of ``POINT:ACTION[:N]``:
``ACTION`` is ``crash`` (``os._exit(137)``, like ``kill -9``: no cleanup, no acks) or
``freeze`` (``SIGSTOP`` to itself); ``N`` fires on the N-th time the point is reached
(default 1). Example: ``ACKFLOW_FAULTS=engine.after_commit:crash:3``.

When the variable is unset, `hit` is a lookup in an empty dict: nothing measurable.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

log = logging.getLogger("ackflow.faults")

ENGINE_POINTS = (
    "engine.after_decode",
    "engine.after_commit",
    "engine.after_publish",
    "engine.after_mark_sent",
    "engine.before_ack",
)
WORKER_POINTS = (
    "worker.after_execute",
    "worker.after_publish",
    "worker.before_ack",
)
SCHEDULE_POINTS = (  # an engine firing a schedule (runner.schedule.firing)
    "schedule.after_submit",  # its runs submitted, the schedule not advanced
    "schedule.after_advance",  # advanced, its claimed timer not forgotten
)
POINTS = ENGINE_POINTS + WORKER_POINTS + SCHEDULE_POINTS

_lock = threading.Lock()
_armed: dict[str, list[object]] = {}  # point -> [action, remaining hits]


def configure(spec: str | None) -> None:
    """Arm the points named in ``spec`` (the ``ACKFLOW_FAULTS`` syntax); ``None`` disarms all."""
    _armed.clear()
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or parts[0] not in POINTS or parts[1] not in ("crash", "freeze"):
            raise ValueError(
                f"bad ACKFLOW_FAULTS item {item!r}: expected POINT:crash|freeze[:N], POINT in {POINTS}"
            )
        _armed[parts[0]] = [parts[1], int(parts[2]) if len(parts) == 3 else 1]


def hit(point: str) -> None:
    """Reached a fault point: crash or freeze here if it is armed and its count is due."""
    if not _armed:
        return
    with _lock:
        entry = _armed.get(point)
        if entry is None:
            return
        entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
        if int(entry[1]) > 0:  # type: ignore[call-overload]
            return
        del _armed[point]
    log.warning("fault point %s: %s", point, entry[0])
    sys.stderr.write(f"ackflow fault point {point}: {entry[0]}\n")
    sys.stderr.flush()
    if entry[0] == "crash":
        os._exit(137)
    os.kill(os.getpid(), signal.SIGSTOP)


configure(os.environ.get("ACKFLOW_FAULTS"))
