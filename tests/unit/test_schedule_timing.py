"""The schedule maths (runner.schedule.timing): when a cron, interval or one-shot schedule fires,
across time zones and DST changes, and which firings each catch-up policy starts."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import ScheduleError
from runner.schedule.timing import BATCH, LATE_OK_MS, When, iso, parse_at, parse_duration, plan

PARIS = ZoneInfo("Europe/Paris")
T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
times = st.integers(min_value=T0, max_value=T0 + 5 * 365 * 86400_000)
CRONS = ["*/5 * * * *", "30 2 * * *", "0 9 * * 1-5", "* * * * * */10", "15 */3 * * *", "0 0 1 * *"]


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("1w") == 604800
    for bad in ("", "10", "m", "-5m", "1.5h", "10 minutes", "0s", "400d"):
        with pytest.raises(ScheduleError):
            parse_duration(bad)


def test_times() -> None:
    assert iso(parse_at("2027-01-01T00:00Z")) == "2027-01-01T00:00:00Z"
    assert iso(parse_at("2027-01-01T09:00:30+01:00")) == "2027-01-01T08:00:30Z"
    for bad in ("2027-01-01T00:00", "tomorrow", "2027-13-01T00:00Z"):
        with pytest.raises(ScheduleError):
            parse_at(bad)


@pytest.mark.parametrize(
    "when",
    [
        When(cron="* * * *"),
        When(cron="61 * * * *"),
        When(cron="* * * * * * *"),
        When(cron="*/5 * * * *", tz="Mars/Olympus"),
        When(every_s=0),
        When(),
        When(cron="* * * * *", every_s=5),
    ],
)
def test_bad_definitions_are_refused(when: When) -> None:
    with pytest.raises(ScheduleError):
        when.check()


@settings(max_examples=60, deadline=None)
@given(expr=st.sampled_from(CRONS), tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]), t=times)
def test_cron_next_and_last_agree(expr: str, tz: str, t: int) -> None:
    """next_after is the first firing after t: strictly later, whole seconds, and the last
    firing at or before it is itself, while the last firing at or before t is earlier."""
    w = When(cron=expr, tz=tz)
    n = w.next_after(t)
    assert n is not None and n > t and n % 1000 == 0
    assert w.last_at_or_before(n) == n
    before = w.last_at_or_before(t)
    assert before is not None and before <= t
    assert w.next_after(before) == n  # nothing between the last one at or before t and the next


@settings(max_examples=60, deadline=None)
@given(every=st.integers(1, 86400 * 3), anchor=times, dt=st.integers(0, 10 * 86400_000))
def test_every_fires_at_whole_multiples_of_the_interval(every: int, anchor: int, dt: int) -> None:
    anchor = anchor // 1000 * 1000
    w = When(every_s=every, anchor_ms=anchor)
    t = anchor + dt
    n = w.next_after(t)
    assert n is not None and n > t and (n - anchor) % (every * 1000) == 0 and n - t <= every * 1000
    assert w.between(anchor, anchor + 3 * every * 1000, 10) == [anchor + k * every * 1000 for k in (1, 2, 3)]


def test_cron_in_a_time_zone_across_both_dst_changes() -> None:
    """02:30 Paris, daily: on the spring-forward day 02:30 does not exist and the firing moves to
    03:00 (once); on the fall-back day 02:30 exists twice and fires once. One firing a day."""
    w = When(cron="30 2 * * *", tz="Europe/Paris")
    start = ms(datetime(2026, 3, 27, 12, tzinfo=PARIS))
    got = w.between(start, start + 4 * 86400_000, 10)
    local = [datetime.fromtimestamp(t / 1000, PARIS).strftime("%m-%d %H:%M") for t in got]
    assert local == ["03-28 02:30", "03-29 03:00", "03-30 02:30", "03-31 02:30"]
    start = ms(datetime(2026, 10, 24, 12, tzinfo=PARIS))
    got = w.between(start, start + 3 * 86400_000, 10)
    assert len(got) == 3  # 10-25 02:30 fires once, though the wall clock shows it twice
    assert [b - a for a, b in zip(got, got[1:], strict=False)] == [25 * 3600_000, 24 * 3600_000]


def test_cron_in_utc_with_seconds() -> None:
    w = When(cron="* * * * * */15")
    t = ms(datetime(2026, 6, 1, 12, 0, 7, tzinfo=UTC))
    assert [iso(x) for x in w.between(t, t + 30_000, 5)] == [
        "2026-06-01T12:00:15Z",
        "2026-06-01T12:00:30Z",
    ]


def test_one_shot() -> None:
    w = When(at_ms=T0 + 5000)
    assert w.next_after(T0) == T0 + 5000 and w.next_after(T0 + 5000) is None
    assert w.last_at_or_before(T0 + 4999) is None and w.last_at_or_before(T0 + 9000) == T0 + 5000
    p = plan(w, T0 + 5000, T0 + 3600_000, "latest", None)
    assert p.fire == [T0 + 5000] and p.next_ms is None


EVERY_MIN = When(every_s=60, anchor_ms=T0)


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 500), late_ms=st.integers(0, 500 * 60_000))
def test_catch_up_policies(k: int, late_ms: int) -> None:
    """After downtime: all starts every missed firing (within the window), latest only the
    last one, none only a firing that is barely late; each arms the first firing after now."""
    due = T0 + k * 60_000
    now = due + late_ms
    missed = EVERY_MIN.between(due, now, 10_000)
    nxt = EVERY_MIN.next_after(now)
    every = plan(EVERY_MIN, due, now, "all", None)
    assert every.fire == missed[:BATCH]
    assert every.next_ms == (missed[BATCH] if len(missed) > BATCH else nxt)
    window = plan(EVERY_MIN, due, now, "all", 600)
    assert window.fire == [t for t in missed if now - t <= 600_000] and window.next_ms == nxt
    latest = plan(EVERY_MIN, due, now, "latest", None)
    assert latest.fire == [missed[-1]] and latest.next_ms == nxt
    none = plan(EVERY_MIN, due, now, "none", None)
    assert none.fire == ([missed[-1]] if now - missed[-1] <= LATE_OK_MS else []) and none.next_ms == nxt


def test_catch_up_all_goes_on_in_batches_until_now() -> None:
    """A long outage under "all": BATCH firings per step, each step arming the next missed one
    (already due), until every one is started exactly once."""
    w = When(every_s=1, anchor_ms=T0)
    now = T0 + 250_000
    due: int | None = T0 + 1000
    started: list[int] = []
    while due is not None and due <= now:
        p = plan(w, due, now, "all", None)
        started += p.fire
        due = p.next_ms
    assert started == list(range(T0 + 1000, now + 1, 1000)) and due == now + 1000


def test_not_due_yet_starts_nothing() -> None:
    assert plan(EVERY_MIN, T0 + 60_000, T0 + 59_999, "all", None).fire == []
