"""Schedules, client side: add (validated against the flow registry, like a submit by name),
list, show, pause, resume and delete. The engines fire them (`runner.schedule.firing`).

Every change is a compare-and-swap of the schedule's record (`Store.swap_schedule`), retried
on a concurrent change, so a pause never undoes an engine's advance nor the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runner import protocol, submission
from runner.client import flows
from runner.define.spec import validate_inputs
from runner.errors import ScheduleConflict, ScheduleError, ScheduleNotFound
from runner.schedule.model import Schedule, check_name
from runner.schedule.timing import When, iso, parse_at, parse_duration, zone
from runner.store import Store, keys

_TRIES = 50


def _seconds(value: str | int | float | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_duration(value, what)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 1:
        raise ScheduleError(f"{what} must be a whole number of seconds >= 1 or a duration such as 10m")
    return int(value)


def _at_ms(at: str | int | float | None, in_: str | int | float | None, now_ms: int) -> int | None:
    if at is not None and in_ is not None:
        raise ScheduleError("give a time (at) or a delay (in), not both")
    if in_ is not None:
        return (now_ms // 1000 + (_seconds(in_, "delay") or 0)) * 1000
    if at is None:
        return None
    if isinstance(at, str):
        return parse_at(at)
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ScheduleError("at must be an ISO 8601 time or epoch milliseconds")
    return int(at) // 1000 * 1000


class Schedules:
    """The schedules of one store (`Client.schedules`)."""

    def __init__(self, store: Store, max_bytes: int = 1 << 20) -> None:
        self.store = store
        self.max_bytes = max_bytes  # a firing's submit message must fit (`Config.max_payload_bytes`)

    def add(
        self,
        name: str,
        flow: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        every: str | int | None = None,
        at: str | int | None = None,
        in_: str | int | None = None,
        version: str | None = None,
        overlap: str = "skip",
        catchup: str = "latest",
        catchup_window: str | int | None = None,
        run_id: str | None = None,
    ) -> Schedule:
        """Add a schedule of registered flow ``flow``: ``cron`` (in zone ``tz``), ``every``
        (seconds or a duration such as ``10m``) or once ``at`` (ISO 8601 or epoch ms) / ``in_``
        (a delay). Raises `ScheduleError` (bad definition), `FlowDefinitionError` (unknown
        flow or version, missing or unknown inputs) or `ScheduleConflict` (the name exists)."""
        check_name(name)
        now = protocol.now_ms()
        zone(tz)
        every_s = _seconds(every, "interval")
        when = When(
            cron=cron, tz=tz, every_s=every_s, anchor_ms=now // 1000 * 1000, at_ms=_at_ms(at, in_, now)
        )
        if run_id is not None and when.at_ms is None:
            raise ScheduleError("a run id goes with a one-shot schedule (at or in) only")
        spec = flows.get(self.store, flow, version)
        inputs = dict(inputs or {})
        validate_inputs(spec, inputs)
        pinned = flows.digest_of(spec) if version is not None else None
        s = Schedule(
            name,
            flow,
            when,
            inputs,
            pinned,
            overlap,
            catchup,
            _seconds(catchup_window, "catch-up window"),
            keys.check_run_id(run_id) if run_id is not None else None,
            now,
        ).check()
        if when.at_ms is not None and when.at_ms < now // 1000 * 1000:
            raise ScheduleError(f"the time {iso(when.at_ms)} is in the past")
        nxt = when.at_ms if when.at_ms is not None else when.next_after(now)
        s = s.with_(next_ms=nxt)
        submission.build(spec, inputs, s.run_id_of(nxt or now), None, self.max_bytes)  # sendable?
        if not self.store.swap_schedule(name, None, s.pack(), nxt):
            raise ScheduleConflict(name)
        return s

    def list(self) -> list[Schedule]:
        return [Schedule.unpack(raw) for _, raw in sorted(self.store.list_schedules().items())]

    def get(self, name: str) -> Schedule:
        raw = self.store.get_schedule(name)
        if raw is None:
            raise ScheduleNotFound(name)
        return Schedule.unpack(raw)

    def pause(self, name: str) -> Schedule:
        """Stop firing (firings due while paused are skipped); a no-op if paused."""
        return self._change(name, lambda s: (s.with_(paused=True), None))

    def resume(self, name: str) -> Schedule:
        """Fire again from the next scheduled time after now."""

        def resumed(s: Schedule) -> tuple[Schedule, int | None]:
            if not s.paused:
                return s, None
            nxt = s.when.next_after(protocol.now_ms())
            return s.with_(paused=False, next_ms=nxt, note=""), nxt

        return self._change(name, resumed)

    def delete(self, name: str) -> None:
        """Forget the schedule (its runs stay); its armed timer is dropped when it comes due."""
        for _ in range(_TRIES):
            raw = self.store.get_schedule(name)
            if raw is None:
                raise ScheduleNotFound(name)
            if self.store.swap_schedule(name, raw, None, None):
                return
        raise ScheduleError(f"schedule {name!r} kept changing; try again")

    def _change(self, name: str, fn: Callable[[Schedule], tuple[Schedule, int | None]]) -> Schedule:
        for _ in range(_TRIES):
            raw = self.store.get_schedule(name)
            if raw is None:
                raise ScheduleNotFound(name)
            new, arm = fn(Schedule.unpack(raw))
            packed = new.pack()
            if packed == raw or self.store.swap_schedule(name, raw, packed, arm):
                return new
        raise ScheduleError(f"schedule {name!r} kept changing; try again")


def state_of(s: Schedule) -> str:
    """active, paused, or done (a one-shot that fired)."""
    return "paused" if s.paused else ("done" if s.next_ms is None else "active")


def describe_when(s: Schedule) -> str:
    w = s.when
    if w.cron is not None:
        return f"cron {w.cron}" + (f" ({w.tz})" if w.tz != "UTC" else "")
    if w.every_s is not None:
        return f"every {w.every_s}s"
    return f"at {iso(w.at_ms or 0)}"


def as_dict(s: Schedule) -> dict[str, Any]:
    """A schedule as JSON (`ackflow schedule ... --json`, the REST API)."""
    w = s.when
    return {
        "name": s.name,
        "flow": s.flow,
        "version": s.version,
        "cron": w.cron,
        "tz": w.tz,
        "every_s": w.every_s,
        "at": iso(w.at_ms) if w.at_ms is not None else None,
        "inputs": s.inputs,
        "overlap": s.overlap,
        "catchup": s.catchup,
        "catchup_window_s": s.window_s,
        "run_id": s.run_id,
        "created_ms": s.created_ms,
        "state": state_of(s),
        "paused": s.paused,
        "next_ms": s.next_ms,
        "next": iso(s.next_ms) if s.next_ms is not None else None,
        "last_ms": s.last_ms,
        "last_run": s.last_run,
        "fired": s.fired,
        "note": s.note,
    }
