"""Where the DAG's boxes go: a layered (Sugiyama-style) layout, left to right.

A task's column is one more than its deepest predecessor's. An edge that skips columns gets
a placeholder in each column it crosses, a slot no box takes, so edges run through gaps and
never behind a box. Within a column the order follows the neighbours' average position
(a few sweeps each way), which keeps fan-outs and fan-ins untangled; each column is centred
on the tallest. Pure geometry: `svg` draws it; tests check it (no overlaps, all inside).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

W, H = 200, 52  # a task's box
GAP_X, GAP_Y = 70, 22  # between columns, between slots
SLOT = 12  # a placeholder's slot (an edge crossing a column)
PAD = 16
SWEEPS = 4
MAX_PLACEHOLDERS = 5_000  # beyond, long edges are drawn straight (a huge flow stays cheap)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    points: tuple[tuple[float, float], ...]  # the edge's path: out of src ... into dst


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, tuple[float, float]]  # task -> top-left corner of its W x H box
    edges: list[Edge]
    width: float
    height: float


def levels(preds: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each task's column: 1 + the deepest of its predecessors. Iterative (topological order):
    recursing once per link overflowed the stack on a 1,200-task chain."""
    succs: dict[str, list[str]] = {n: [] for n in preds}
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
    for n in preds:  # in a cycle (not a valid flow): drawn after everything else
        level.setdefault(n, deepest + 1)
    return level


def natural(name: str) -> list[tuple[int, int | str]]:
    """A sort key putting ``leaf2`` before ``leaf10``."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def _order(columns: list[list[str]], ups: dict[str, list[str]], downs: dict[str, list[str]]) -> None:
    """Reorder each column by its neighbours' mean position (barycentres), in place."""
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        seq = range(1, len(columns)) if down else range(len(columns) - 2, -1, -1)
        for c in seq:
            ref = {n: i for i, n in enumerate(columns[c - 1 if down else c + 1])}
            near = ups if down else downs
            keyed = []
            for i, n in enumerate(columns[c]):
                ps = [ref[p] for p in near.get(n, ()) if p in ref]
                keyed.append((sum(ps) / len(ps) if ps else float(i), i, n))
            columns[c] = [n for _, _, n in sorted(keyed)]


def layout(preds: Mapping[str, Sequence[str]]) -> Layout:
    """``preds``: task -> its predecessors (names outside the mapping and self-links ignored),
    in the order the tasks should be tried in a column."""
    preds = {n: [p for p in ps if p in preds and p != n] for n, ps in preds.items()}
    level = levels(preds)
    links = [(p, n) for n, ps in preds.items() for p in ps]
    span = sum(max(0, level[n] - level[p] - 1) for p, n in links)
    use_slots = span <= MAX_PLACEHOLDERS
    ups: dict[str, list[str]] = {}
    downs: dict[str, list[str]] = {}
    chains: dict[tuple[str, str], list[str]] = {}
    column_of = dict(level)
    for p, n in links:
        chain = [p]
        if use_slots:
            for lv in range(level[p] + 1, level[n]):
                slot = f"\x00{p}\x00{n}\x00{lv}"  # never a task's name
                column_of[slot] = lv
                chain.append(slot)
        chain.append(n)
        for a, b in zip(chain, chain[1:], strict=False):
            ups.setdefault(b, []).append(a)
            downs.setdefault(a, []).append(b)
        chains[(p, n)] = chain
    columns: list[list[str]] = [[] for _ in range(max(column_of.values(), default=-1) + 1)]
    for n in [*sorted(preds, key=natural), *(s for s in column_of if s not in preds)]:
        columns[column_of[n]].append(n)
    _order(columns, ups, downs)

    def size(n: str) -> float:
        return SLOT if n.startswith("\x00") else H

    heights = [sum(size(n) for n in col) + GAP_Y * max(0, len(col) - 1) for col in columns]
    tallest = max(heights, default=0)
    top: dict[str, float] = {}
    for c, col in enumerate(columns):
        y = PAD + (tallest - heights[c]) / 2
        for n in col:
            top[n] = y
            y += size(n) + GAP_Y

    def x(c: int) -> float:
        return PAD + c * (W + GAP_X)

    boxes = {n: (x(level[n]), top[n]) for n in preds}
    edges = []
    for (p, n), chain in chains.items():
        points = [(x(level[p]) + W, top[p] + H / 2)]
        for slot in chain[1:-1]:
            mid = top[slot] + SLOT / 2
            points += [(x(column_of[slot]), mid), (x(column_of[slot]) + W, mid)]
        points.append((x(level[n]), top[n] + H / 2))
        edges.append(Edge(p, n, tuple(points)))
    width = PAD * 2 + len(columns) * (W + GAP_X) - GAP_X if columns else 0
    return Layout(boxes, edges, width, PAD * 2 + tallest)
