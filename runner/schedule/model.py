"""A schedule as stored: its definition (flow, inputs, when, policies) and its state (next
firing, paused, the last firing and its run), packed as one record. Every change of a record is
a compare-and-swap of its packed bytes (`Store.swap_schedule`), so two writers never both win.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from runner.errors import ScheduleError
from runner.protocol import pack, unpack
from runner.schedule.timing import CATCHUPS, OVERLAPS, When, iso

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ScheduleError(
            f"bad schedule name {str(name)[:100]!r}: 1 to 80 letters, digits, '_', '.' or '-' "
            "(it starts the id of each run it fires)"
        )
    return name


@dataclass(frozen=True)
class Schedule:
    name: str
    flow: str
    when: When
    inputs: dict[str, Any] = field(default_factory=dict)
    version: str | None = None  # a pinned version's full digest; None: the latest at each firing
    overlap: str = "skip"
    catchup: str = "latest"
    window_s: int | None = None
    run_id: str | None = None  # a one-shot's run id (else each run is "<name>:<time>")
    created_ms: int = 0
    # state
    paused: bool = False
    next_ms: int | None = None
    last_ms: int | None = None  # the scheduled time of the last firing started
    last_run: str | None = None
    fired: int = 0
    note: str = ""  # why the last firing started no run, if it did not

    def check(self) -> Schedule:
        check_name(self.name)
        self.when.check()
        if self.overlap not in OVERLAPS:
            raise ScheduleError(f"overlap policy {self.overlap!r}: one of {', '.join(OVERLAPS)}")
        if self.catchup not in CATCHUPS:
            raise ScheduleError(f"catch-up policy {self.catchup!r}: one of {', '.join(CATCHUPS)}")
        if self.window_s is not None and self.catchup == "none":
            raise ScheduleError("a catch-up window goes with --catchup latest or all, not none")
        return self

    def run_id_of(self, at_ms: int) -> str:
        """The id of the run of the firing scheduled at ``at_ms``: the same on every engine."""
        return self.run_id or f"{self.name}:{iso(at_ms)}"

    def with_(self, **changes: Any) -> Schedule:
        return replace(self, **changes)

    def pack(self) -> bytes:
        d = asdict(self)
        d["when"] = asdict(self.when)
        return pack(d)

    @classmethod
    def unpack(cls, raw: bytes) -> Schedule:
        d = dict(unpack(raw))
        d["when"] = When(**d["when"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
