"""CPU seconds per 1,000 steps for each kind of process, from ``/proc/<pid>/stat``.

A `Meter` reads user + system time of every process of each kind (and of their child
processes: Celery's prefork pool) before and after a measured window; the difference, divided
by the steps the window ran, is the figure in the table. RabbitMQ (``beam.smp``) and Redis
(``redis-server``) are found by process name: on a shared machine they also serve others, so
their figures are upper bounds. Off Linux (no ``/proc``) every figure is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

PROC = Path("/proc")
SERVICES = {"rabbitmq": "beam.smp", "redis": "redis-server"}


def _ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):  # pragma: no cover - not POSIX
        return 100


TICK = _ticks()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads), None if it is gone."""
    f = _stat(pid)
    if f is None:
        return None
    return (int(f[11]) + int(f[12])) / TICK  # utime, stime: fields 14 and 15


def _all_pids() -> list[int]:
    try:
        return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]
    except OSError:  # pragma: no cover - no /proc
        return []


def with_descendants(pids: Iterable[int]) -> list[int]:
    """``pids`` and every process below them."""
    parent: dict[int, int] = {}
    for pid in _all_pids():
        f = _stat(pid)
        if f is not None:
            parent[pid] = int(f[1])
    out = list(pids)
    seen = set(out)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in seen and pid not in seen:
                seen.add(pid)
                out.append(pid)
                grew = True
    return out


def pids_named(comm: str) -> list[int]:
    out = []
    for pid in _all_pids():
        try:
            if (PROC / str(pid) / "comm").read_text().strip() == comm:
                out.append(pid)
        except OSError:
            continue
    return out


class Meter:
    """CPU of process kinds around one window: ``start()``, run, ``per_1000(steps)``.

    ``kinds`` maps a kind (``engine``, ``worker``, ``celery worker``) to its processes' pids;
    their descendants are added when the window starts. RabbitMQ and Redis are added by name,
    and ``own`` names this process's kind (the client; in local mode, everything), its
    children not included."""

    def __init__(
        self, kinds: Mapping[str, Iterable[int]], own: str = "client", services: bool = True
    ) -> None:
        self.kinds: dict[str, list[int]] = {k: list(v) for k, v in kinds.items()}
        self.own = own
        self.kinds[own] = [os.getpid()]
        for kind, comm in SERVICES.items() if services else ():
            self.kinds[kind] = pids_named(comm)
        self._before: dict[str, dict[int, float]] = {}

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for kind, pids in self.kinds.items():
            out[kind] = {pid: s for pid in pids if (s := cpu_seconds(pid)) is not None}
        return out

    def start(self) -> None:
        # this process alone: the engines and workers it started are its children too
        self.kinds = {k: v if k == self.own else with_descendants(v) for k, v in self.kinds.items()}
        self._before = self._read()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per kind since `start` (a process gone since then counts nothing)."""
        after = self._read()
        return {
            kind: sum(after[kind][pid] - t0 for pid, t0 in before.items() if pid in after[kind])
            for kind, before in self._before.items()
            if before
        }

    def per_1000(self, steps: int) -> dict[str, float]:
        return {k: 1000 * s / steps for k, s in self.seconds().items()}
