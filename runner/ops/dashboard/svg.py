"""Draw a run's DAG as inline SVG: columns by dependency depth, one box per task."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from runner.define.spec import END, TaskSpec
from runner.logs import scrub

W, H, GAP_X, GAP_Y, PAD = 170, 52, 60, 22, 16


def _levels(specs: Mapping[str, TaskSpec]) -> dict[str, int]:
    """Each task's column: 1 + the deepest of its predecessors. Iterative (topological order):
    recursing once per link overflowed the stack on a 1,200-task chain."""
    preds = {n: [p for p in specs[n].preds if p in specs and p != n] for n in specs}
    succs: dict[str, list[str]] = {n: [] for n in specs}
    missing = {n: len(ps) for n, ps in preds.items()}
    for n, ps in preds.items():
        for p in ps:
            succs[p].append(n)
    level: dict[str, int] = {}
    ready = [n for n, k in missing.items() if k == 0]
    while ready:
        n = ready.pop()
        level[n] = 1 + max((level[p] for p in preds[n]), default=-1)
        for s in succs[n]:
            missing[s] -= 1
            if missing[s] == 0:
                ready.append(s)
    deepest = max(level.values(), default=-1)
    for n in specs:  # in a cycle (not a valid flow): drawn after everything else
        level.setdefault(n, deepest + 1)
    return level


def dag(specs: Mapping[str, TaskSpec], tasks: Mapping[str, Any]) -> str:
    """``tasks``: name -> an object with status, attempt, duration_ms, progress (TaskInfo)."""
    if not specs:
        return ""
    level = _levels(specs)
    columns: dict[int, list[str]] = {}
    for n in sorted(specs, key=lambda n: (level[n], n)):
        columns.setdefault(level[n], []).append(n)
    pos = {
        n: (PAD + lv * (W + GAP_X), PAD + i * (H + GAP_Y))
        for lv, names in columns.items()
        for i, n in enumerate(names)
    }
    width = PAD * 2 + (max(columns) + 1) * (W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(v) for v in columns.values()) * (H + GAP_Y) - GAP_Y
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="the run\'s tasks and their dependencies">'
    ]
    for n, spec in specs.items():
        x1, y1 = pos[n]
        for s in spec.succs:
            if s == END or s not in pos:
                continue
            x2, y2 = pos[s]
            cond = spec.when.get(s)
            dash = ' stroke-dasharray="5 4"' if cond else ""
            parts.append(
                f'<path class="edge" d="M{x1 + W},{y1 + H / 2} C{x1 + W + GAP_X / 2},{y1 + H / 2} '
                f'{x2 - GAP_X / 2},{y2 + H / 2} {x2},{y2 + H / 2}"{dash}/>'
            )
            if cond:
                label = escape(
                    f"{cond['value']} {cond['op']} {'' if cond['arg'] is None else cond['arg']}".strip()
                )
                parts.append(
                    f'<text class="edge-label" x="{x2 - GAP_X + 4}" y="{y2 + H / 2 - 4}">{label}</text>'
                )
    for n, (x, y) in pos.items():
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
        parts.append(
            f'<g class="task state-{escape(status)}" data-task="{escape(n)}" data-status="{escape(status)}">'
            f"<title>{escape(n)}: {escape(status)}</title>"
            f'<rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6"/>'
            f'<text class="name" x="{x + 8}" y="{y + 19}">{escape(n[:24])}</text>'
            f'<text class="detail" x="{x + 8}" y="{y + 38}">{escape(status)} · {escape(detail[:28])}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
