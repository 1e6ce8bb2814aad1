"""A run's timeline (Gantt) as inline SVG: one row per task, one bar per attempt from its start
to its end, coloured by outcome; the time an attempt waited in its queue as a thin line
before its bar, a lazy task's wait for its completion as a hatched bar, a revert as its own
bar; a time axis from the run's creation. Built from the run's history
(`runner.client.attempts`); map elements have their node's page, not rows here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from runner import states
from runner.client import HistoryEntry, RunInfo
from runner.client.attempts import Attempt, attempts_of
from runner.client.render import timestamp
from runner.logs import scrub
from runner.ops.dashboard.svg import fit

LABEL_W, PLOT_W, PAD, AXIS_H = 210, 900, 12, 30
ROW_H, BAR_H = 24, 14
MAX_ROWS = 300  # tasks drawn (in dependency order); the rest are counted
MIN_BAR = 3.0  # an attempt shorter than a pixel still shows
_OPEN = frozenset({states.SCHEDULED, states.RUNNING, states.WAITING, states.REVERTING, states.PENDING})


def span_text(ms: float) -> str:
    """An offset or a duration for people: 0 s, 250 ms, 1.5 s, 2.5 min, 1.2 h."""
    if ms == 0:
        return "0 s"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.3g} s"
    if ms < 7_200_000:
        return f"{ms / 60_000:.3g} min"
    return f"{ms / 3_600_000:.3g} h"


def tick_step(span_ms: float, ticks: int = 8) -> float:
    """A round step (1, 2 or 5 times a power of ten ms) giving at most ``ticks`` ticks."""
    step = 1.0
    while True:
        for m in (1, 2, 5):
            if span_ms / (step * m) <= ticks:
                return step * m
        step *= 10


def _title(task: str, a: Attempt) -> str:
    bits = [f"{task} · attempt {a.number}: {a.outcome}"]
    if a.duration_ms is not None:
        bits.append(span_text(a.duration_ms))
    if a.worker:
        bits.append(f"on {a.worker}")
    if a.error:
        bits.append(a.error)
    if a.note:
        bits.append(a.note)
    return scrub(" · ".join(bits))[:2_000]


def timeline(info: RunInfo, history: Sequence[HistoryEntry], link: Callable[[str], str], now_ms: int) -> str:
    """``link``: a task's page (already escaped). ``now_ms`` ends what is still going."""
    found = attempts_of(history)
    names = [n for n in info.tasks][:MAX_ROWS]
    if not names:
        return ""
    times = [t for a in (x for n in names for x in found.get(n, ())) for t in _times(a)]
    t0 = min([info.created_ms or now_ms, *times])
    end = info.finished_ms if info.done and info.finished_ms else now_ms
    t1 = max([end, *times, t0 + 1])
    scale = PLOT_W / (t1 - t0)

    def x(t: float) -> float:
        return LABEL_W + (t - t0) * scale

    width, height = LABEL_W + PLOT_W + 60, AXIS_H + ROW_H * len(names) + PAD
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="the run\'s attempts over time">'
    ]
    step = tick_step(t1 - t0)
    k = 0
    while k * step <= t1 - t0:
        tx = x(t0 + k * step)
        out.append(
            f'<line class="grid" x1="{tx:g}" y1="{AXIS_H - 6}" x2="{tx:g}" y2="{height - PAD}"/>'
            f'<text class="tick" x="{tx:g}" y="{AXIS_H - 10}">{escape(span_text(k * step))}</text>'
        )
        k += 1
    out.append(f'<text class="axis" x="0" y="{AXIS_H - 10}">from {escape(timestamp(t0, False))}</text>')
    for row, name in enumerate(names):
        y = AXIS_H + row * ROW_H
        top = y + (ROW_H - BAR_H) / 2
        tries = found.get(name, [])
        label = f"{name} ×{len(tries)}" if len(tries) > 1 else name
        out.append(
            f'<g class="row" data-task="{escape(name)}"><a href="{link(name)}">'
            f'<text class="label" x="0" y="{y + ROW_H / 2 + 4:g}"><title>{escape(name)}</title>'
            f"{escape(fit(label, 12, LABEL_W - 12, bold=False))}</text></a>"
        )
        if not tries:
            out.append(
                f'<text class="none" x="{LABEL_W + 4}" y="{y + ROW_H / 2 + 4:g}">'
                f"{escape(info.tasks[name].status.lower())}</text>"
            )
        for a in tries:
            out.append(_bars(name, a, x, top, end, link(name)))
        out.append("</g>")
    out.append("</svg>")
    hidden = len(info.tasks) - len(names)
    note = f"<p class=muted>{hidden} more tasks not drawn.</p>" if hidden > 0 else ""
    return f'<div class="timeline-wrap">{"".join(out)}</div>{note}{LEGEND}'


def _times(a: Attempt) -> list[int]:
    return [
        t
        for t in (
            a.scheduled_ms,
            a.started_ms,
            a.waiting_ms,
            a.ended_ms,
            a.revert_started_ms,
            a.revert_ended_ms,
        )
        if t is not None
    ]


def _bars(name: str, a: Attempt, x: Callable[[float], float], top: float, end: int, href: str) -> str:
    """An attempt's marks: the queue wait, the body, the lazy wait, the revert."""
    open_end = a.ended_ms if a.ended_ms is not None else end
    start = a.started_ms if a.started_ms is not None else a.waiting_ms
    parts = []
    title = f"<title>{escape(_title(name, a))}</title>"
    q_end = start if start is not None else open_end
    if a.scheduled_ms is not None and q_end > a.scheduled_ms:
        parts.append(
            f'<line class="queued" x1="{x(a.scheduled_ms):g}" y1="{top + BAR_H / 2:g}" '
            f'x2="{x(q_end):g}" y2="{top + BAR_H / 2:g}"/>'
        )
    outcome = a.outcome if a.outcome not in (states.REVERTING, states.REVERTED) else states.SUCCESS
    body_from = start if start is not None else (a.ended_ms if a.ended_ms is not None else None)
    if body_from is not None:
        body_to = a.waiting_ms if a.waiting_ms is not None else open_end
        if a.revert_started_ms is not None and a.ended_ms is None:
            body_to = a.revert_started_ms
        parts.append(_rect("bar o-" + outcome, x(body_from), x(max(body_from, body_to)), top, a, title))
        if a.number > 1 and x(body_to) - x(body_from) >= 26:
            parts.append(
                f'<text class="try" x="{x(body_from) + 3:g}" y="{top + BAR_H - 3:g}">#{a.number}</text>'
            )
    if a.waiting_ms is not None:
        parts.append(_rect("bar waiting o-" + outcome, x(a.waiting_ms), x(open_end), top, a, title))
    if a.revert_started_ms is not None:
        r_end = a.revert_ended_ms if a.revert_ended_ms is not None else end
        parts.append(_rect("bar o-REVERTED", x(a.revert_started_ms), x(r_end), top, a, title))
    return f'<a href="{href}">{"".join(parts)}</a>' if parts else ""


def _rect(cls: str, x1: float, x2: float, top: float, a: Attempt, title: str) -> str:
    w = max(MIN_BAR, x2 - x1)
    return (
        f'<rect class="{escape(cls)}" data-attempt="{a.number}" data-outcome="{escape(a.outcome)}" '
        f'x="{x1:g}" y="{top:g}" width="{w:g}" height="{BAR_H}" rx="2">{title}</rect>'
    )


LEGEND = (
    '<p class="legend"><span class="sw o-SUCCESS"></span>succeeded <span class="sw o-FAILED"></span>failed '
    '<span class="sw o-RUNNING"></span>running <span class="sw waiting"></span>waiting for a completion '
    '<span class="sw o-REVERTED"></span>reverting <span class="sw o-SKIPPED"></span>skipped '
    '<span class="sw queued"></span>queued</p>'
)
