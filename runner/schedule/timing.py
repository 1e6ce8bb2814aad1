"""The schedule maths: when a schedule fires, and which firings an engine starts when it finds
one due (its catch-up policy). Pure functions of times in epoch milliseconds; cron expressions
are croniter's (5 fields, or 6 with seconds last), read in the schedule's time zone.

Every firing time is a whole second, so a firing's run id (``<schedule>:<time>``) names it
exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runner.errors import ScheduleError

OVERLAPS = ("skip", "allow", "cancel_previous")
CATCHUPS = ("none", "latest", "all")
LATE_OK_MS = 30_000  # catch-up none: a firing at most this late still starts (an engine's hold)
BATCH = 100  # catch-up all: firings started per step (the rest at once, in further steps)
MAX_EVERY_S = 366 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^(?:\d+[smhdw])+$")


def parse_duration(text: str, what: str = "duration") -> int:
    """``90s``, ``10m``, ``1h30m``, ``2d``, ``1w`` -> whole seconds (at least one)."""
    t = text.strip().lower()
    if not _DURATION_RE.match(t):
        raise ScheduleError(
            f"{what} {text!r} is not a duration: use a number and a unit, s m h d or w (e.g. 90s, 10m, 1h30m)"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", t))
    if not 1 <= seconds <= MAX_EVERY_S:
        raise ScheduleError(f"{what} {text!r} must be from 1 s to 366 days")
    return seconds


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris or UTC)") from None


def check_cron(expr: str) -> None:
    fields = expr.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expr):
        raise ScheduleError(
            f"bad cron expression {expr!r}: 5 fields (minute hour day month weekday), or 6 with "
            "seconds last (e.g. '*/5 * * * *', '* * * * * */10')"
        )


def parse_at(text: str) -> int:
    """An ISO 8601 time with its offset (``2027-01-01T00:00Z``, ``...T09:00+01:00``) -> ms,
    to the whole second."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"bad time {text!r}: use ISO 8601 with a zone, e.g. 2027-01-01T00:00Z") from None
    if dt.tzinfo is None:
        raise ScheduleError(f"time {text!r} has no zone: add Z or an offset such as +01:00")
    return int(dt.timestamp()) * 1000


def iso(ms: int) -> str:
    """A firing time as it appears in run ids and listings: UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class When:
    """When a schedule fires: a cron expression in a zone, every N seconds from an anchor, or
    once at a time."""

    cron: str | None = None
    tz: str = "UTC"
    every_s: int | None = None
    anchor_ms: int = 0  # every: firings are anchor + k * every, k >= 1
    at_ms: int | None = None

    def check(self) -> None:
        kinds = [self.cron is not None, self.every_s is not None, self.at_ms is not None]
        if sum(kinds) != 1:
            raise ScheduleError("a schedule needs exactly one of a cron expression, an interval or a time")
        zone(self.tz)
        if self.cron is not None:
            check_cron(self.cron)
        if self.every_s is not None and not 1 <= self.every_s <= MAX_EVERY_S:
            raise ScheduleError("an interval must be from 1 s to 366 days")

    def _cron(self, start_ms: int) -> Any:
        start = datetime.fromtimestamp(start_ms / 1000, zone(self.tz))
        return croniter(self.cron, start)

    def next_after(self, t_ms: int) -> int | None:
        """The first firing strictly after ``t_ms``; None if there is none (a one-shot's past)."""
        if self.at_ms is not None:
            return self.at_ms if self.at_ms > t_ms else None
        if self.every_s is not None:
            step = self.every_s * 1000
            k = max(0, (t_ms - self.anchor_ms) // step) + 1
            return self.anchor_ms + k * step
        it = self._cron(t_ms)
        while True:
            t = int(it.get_next(float) * 1000)
            if not self._repeat(t):
                return t

    def last_at_or_before(self, t_ms: int) -> int | None:
        """The last firing at or before ``t_ms``; None if there is none."""
        if self.at_ms is not None:
            return self.at_ms if self.at_ms <= t_ms else None
        if self.every_s is not None:
            step = self.every_s * 1000
            if t_ms < self.anchor_ms + step:
                return None
            return self.anchor_ms + ((t_ms - self.anchor_ms) // step) * step
        it = self._cron((t_ms // 1000 + 1) * 1000)  # get_prev is strict: from the next second
        while True:
            t = int(it.get_prev(float) * 1000)
            if not self._repeat(t):
                return t

    def _repeat(self, t_ms: int) -> bool:
        """Whether a cron firing is a fixed-hour job's wall time coming round again as the
        clocks go back (the second 02:30 of a fall-back night): skipped, as cron does, so a
        daily job runs once that day. Jobs with a wildcard hour fire in both passes: real
        time goes on."""
        if "*" in (self.cron or "* *").split()[1]:
            return False
        return datetime.fromtimestamp(t_ms / 1000, zone(self.tz)).fold == 1

    def between(self, lo_ms: int, hi_ms: int, limit: int) -> list[int]:
        """Up to ``limit`` firings in [lo, hi], oldest first."""
        out: list[int] = []
        t = self.next_after(lo_ms - 1)
        while t is not None and t <= hi_ms and len(out) < limit:
            out.append(t)
            t = self.next_after(t)
        return out


@dataclass(frozen=True)
class Plan:
    """What an engine does with a due schedule: start these firings (scheduled times, oldest
    first), skip ``missed`` older ones, and arm the next firing at ``next_ms`` (None: no more;
    at or before now: more are due, fired in the next step)."""

    fire: list[int]
    next_ms: int | None
    missed: bool = False


def plan(when: When, due_ms: int, now_ms: int, catchup: str, window_s: int | None) -> Plan:
    """The firings to start now for a schedule whose next firing, ``due_ms``, has come.

    - ``all``: every firing from ``due_ms`` to now, but those more than the window late
      (default: no limit), BATCH at a time;
    - ``latest``: only the last firing due, if it is within the window (default: no limit);
    - ``none``: only the last firing due, and only if it is at most LATE_OK_MS late (a firing
      missed while no engine ran is skipped).
    """
    if due_ms > now_ms:
        return Plan([], due_ms)
    window_ms = None if window_s is None else window_s * 1000
    if catchup == "all":
        lo = due_ms if window_ms is None else max(due_ms, now_ms - window_ms)
        times = when.between(lo, now_ms, BATCH + 1)
        if len(times) > BATCH:
            return Plan(times[:BATCH], times[BATCH], lo > due_ms)
        return Plan(times, when.next_after(now_ms), lo > due_ms)
    last = when.last_at_or_before(now_ms)
    late_ok = LATE_OK_MS if catchup == "none" else window_ms
    fire = [last] if last is not None and (late_ok is None or now_ms - last <= late_ok) else []
    return Plan(fire, when.next_after(now_ms), missed=not fire or last != due_ms)
