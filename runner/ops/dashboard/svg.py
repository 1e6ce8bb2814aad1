"""Draw a run's DAG as inline SVG: one box per task where `layout` puts it, edges through the
gaps between columns, a name too long for its box cut with "…" (the whole name in the box's
<title>), each box a link to the task's page (`runner.ops.dashboard.tasks`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any

from runner.define.spec import TaskSpec
from runner.logs import scrub
from runner.ops.dashboard.layout import GAP_X, H, W, layout

NAME_PX, DETAIL_PX, LABEL_PX = 12, 11, 10  # font sizes (style.css)
INSET = 8  # text's margin inside its box
LABELS_PER_TASK = 3  # condition labels drawn into one task; the rest only in their edge's <title>


_EM = {
    **{c: 1.1 for c in "WmM…@%"},
    **{c: 0.92 for c in "w&OQ#~=+<>"},
    **{c: 0.85 for c in "DGHNU"},
    **{c: 0.78 for c in "RXAVKBZPC"},
    **{c: 0.6 for c in "csz?_"},
    **{c: 0.5 for c in "tr![](){}-f:;.·,|IJijl' "},
}


def _em(ch: str) -> float:
    """A character's advance in em in bold, a little over what DejaVu Sans Bold (the widest
    font browsers commonly fall back to, measured in Chromium) gives it, so that a cut text
    never spills out of its box. Characters outside the table count as wide."""
    return _EM.get(ch, 0.72 if ch.isascii() else 1.1)


def fit(text: str, px: float, room: float, bold: bool = True) -> str:
    """``text`` cut (with "…") to fit ``room`` pixels at font size ``px``."""
    px *= 1.03 if bold else 0.93  # regular glyphs are narrower (measured as for `_em`)
    if sum(_em(c) for c in text) * px <= room:
        return text
    used, out = _em("…") * px, []
    for c in text:
        used += _em(c) * px
        if used > room:
            break
        out.append(c)
    return "".join(out) + "…"


def _curve(points: tuple[tuple[float, float], ...]) -> str:
    """A path through the points: S-curves across each gap, straight through each column."""
    (x, y), rest = points[0], points[1:]
    d = [f"M{x:g},{y:g}"]
    for i, (x2, y2) in enumerate(rest):
        if i % 2 == 0:  # across a gap
            mid = (x + x2) / 2
            d.append(f"C{mid:g},{y:g} {mid:g},{y2:g} {x2:g},{y2:g}")
        else:  # through a column, in a placeholder's slot
            d.append(f"L{x2:g},{y2:g}")
        x, y = x2, y2
    return " ".join(d)


def _condition(cond: Mapping[str, Any]) -> str:
    arg = "" if cond.get("arg") is None else cond["arg"]
    return f"{cond.get('value')} {cond.get('op')} {arg}".strip()


def dag(
    specs: Mapping[str, TaskSpec], tasks: Mapping[str, Any], link: Callable[[str], str] | None = None
) -> str:
    """``tasks``: name -> an object with status, attempt, duration_ms, progress (TaskInfo).
    ``link``: a task's page (already escaped), to make each box a link."""
    if not specs:
        return ""
    lay = layout({n: s.preds for n, s in specs.items()})
    width, height = lay.width, lay.height
    parts = [
        f'<div class="dag-wrap"><svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width:g}" '
        f'height="{height:g}" viewBox="0 0 {width:g} {height:g}" role="img" '
        'aria-label="the run\'s tasks and their dependencies">'
    ]
    labels: dict[str, int] = {}
    for e in lay.edges:
        cond = specs[e.src].when.get(e.dst)
        dash = ' stroke-dasharray="5 4"' if cond else ""
        tip = f"{e.src} → {e.dst}" + (f" if {_condition(cond)}" if cond else "")
        parts.append(f'<path class="edge" d="{_curve(e.points)}"{dash}><title>{escape(tip)}</title></path>')
        k = labels.get(e.dst, 0)
        if cond and k < LABELS_PER_TASK:
            labels[e.dst] = k + 1
            x2, y2 = e.points[-1]
            full = _condition(cond)
            parts.append(
                f'<text class="edge-label" x="{x2 - GAP_X + 4:g}" y="{y2 - 4 - k * 13:g}">'
                f"<title>{escape(full)}</title>{escape(fit(full, LABEL_PX, GAP_X - 8, bold=False))}</text>"
            )
    for n, (x, y) in lay.boxes.items():
        t: Any = tasks.get(n)
        status = getattr(t, "status", "PENDING")
        detail = f"attempt {getattr(t, 'attempt', 0)}"
        if getattr(t, "progress", None):
            frac, msg = t.progress
            detail = f"{frac:.0%} {scrub(str(msg))}".strip()
        elif isinstance(getattr(t, "duration_ms", None), int) and not isinstance(t.duration_ms, bool):
            detail += f" · {t.duration_ms} ms"  # only a number: the event carrying it is outside data
        if specs[n].map is not None:
            detail = "map · " + detail
        room = W - 2 * INSET
        box = (
            f"<title>{escape(n)}: {escape(status)}</title>"
            f'<rect x="{x:g}" y="{y:g}" width="{W}" height="{H}" rx="6"/>'
            f'<text class="name" x="{x + INSET:g}" y="{y + 19:g}">{escape(fit(n, NAME_PX, room))}</text>'
            f'<text class="detail" x="{x + INSET:g}" y="{y + 38:g}">'
            f"{escape(fit(f'{status} · {detail}', DETAIL_PX, room, bold=False))}</text>"
        )
        if link is not None:
            box = f'<a href="{link(n)}">{box}</a>'
        parts.append(
            f'<g class="task state-{escape(status)}" data-task="{escape(n)}" data-status="{escape(status)}">'
            f"{box}</g>"
        )
    parts.append("</svg></div>")
    return "".join(parts)
