"""What the dashboard's pages share: the frame, links, badges, escaped texts, times."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from runner.client import HistoryEntry
from runner.client.render import cut, timestamp
from runner.logs import scrub

MAX_HISTORY = 1_000  # history rows a run page shows (the newest)
MAX_TEXT = 16_000  # characters of one error message or traceback shown


def ts(ms: int | None, precise: bool = False) -> str:
    return escape(timestamp(ms, precise))


def dur(start: int | None, end: int | None) -> str:
    if not start or not end:
        return "-"
    s = (end - start) / 1000
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def run_href(run_id: str) -> str:
    """The path of a run's page: the id percent-encoded (``:`` kept), then HTML-escaped."""
    return escape(f"/runs/{quote(run_id, safe=':')}")


def text(value: object, limit: int = MAX_TEXT) -> str:
    """A stored text for the page: secrets scrubbed, cut, escaped."""
    return escape(cut(scrub(str(value)), limit))


def millis(value: object) -> str:
    """A task's duration: only a whole number is shown (the event carrying it is outside data)."""
    return f"{value} ms" if isinstance(value, int) and not isinstance(value, bool) else "-"


def badge(status: str) -> str:
    return f'<span class="badge b-{escape(status)}">{escape(status)}</span>'


def layout(
    title: str, body: str, operator: bool, can_operate: bool, flash: str = "", refresh: bool = False
) -> str:
    if not can_operate:
        op = '<span class="muted">read-only (no operator token configured)</span>'
    elif operator:
        op = (
            '<span>operator</span><form class="inline" method="post" action="/logout">'
            '<button type="submit">log out</button></form>'
        )
    else:
        op = (
            '<form class="inline" method="post" action="/login">'
            '<input type="password" name="token" placeholder="operator token" aria-label="operator token">'
            ' <button type="submit">log in</button></form>'
        )
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    msg = f'<div class="flash" role="status">{escape(flash)}</div>' if flash else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)} · ackflow</title>"
        '<link rel="stylesheet" href="/static/style.css"></head><body>'
        '<header><a class="brand" href="/runs">ackflow</a><a href="/runs">Runs</a>'
        '<a href="/dlq">Dead letters</a><a href="/workers">Workers</a><a href="/queues">Queues</a>'
        '<a href="/schedules">Schedules</a>'
        f'<div class="op">{op}</div></header>'
        f"<main>{msg}{body}</main></body></html>"
    )


def task_href(run_id: str, task: str) -> str:
    """The path of a task's page (a map element's too: ``node[3]``), escaped like `run_href`."""
    return escape(f"/runs/{quote(run_id, safe=':')}/tasks/{quote(task, safe='')}")


def completion_forms(run_id: str, task: str) -> str:
    """An operator's "approve / fail" for a waiting task: its result as JSON, or an error."""
    base = task_href(run_id, task)
    return (
        f'<form class="complete" method="post" action="{base}/complete">'
        '<input name="result" value="null" aria-label="result (JSON)" title="the result, as JSON">'
        '<button type="submit">approve</button></form>'
        f'<form class="complete" method="post" action="{base}/fail">'
        '<input name="error" placeholder="why" aria-label="error message" required>'
        '<button type="submit" class="danger">fail</button></form>'
    )


def history_rows(entries: list[HistoryEntry], total: int) -> str:
    """History entries as table rows (at, scope, attempt, transition, details), the newest
    ``len(entries)`` of ``total``."""
    rows = []
    if len(entries) < total:
        rows.append(
            f"<tr><td colspan=5 class=muted>{total - len(entries)} earlier entries not shown"
            " (ackflow history shows all)</td></tr>"
        )
    for h in entries:
        note = str(h.extra.get("note", ""))
        cls = ' class="fenced"' if note.startswith("fenced") else ""
        what = f"{escape(h.old)} → {escape(h.new)}" if h.old != h.new else escape(h.new)
        detail = []
        if "error_type" in h.extra:
            detail.append(f"{text(h.extra['error_type'], 200)}: {text(h.extra.get('error', ''))}")
        if note:
            detail.append(text(note, 2_000))
        if "retry" in h.extra:  # a flow with a retry controller: its attempt's value
            value = f", value {text(repr(h.extra['value']), 200)}" if "value" in h.extra else ""
            detail.append(f"retry controller {text(h.extra['retry'], 50)}{value}")
        if h.extra.get("redelivered"):
            detail.append('<span class="redelivered">redelivered event</span>')
        if h.extra.get("worker"):
            detail.append(f'<span class="muted">{escape(str(h.extra["worker"]))}</span>')
        rows.append(
            f"<tr{cls}><td>{ts(h.at_ms, precise=True)}</td><td>{escape(h.scope)}</td>"
            f"<td>{escape(str(h.attempt or ''))}</td><td>{what}</td><td>{' · '.join(detail)}</td></tr>"
        )
    return (
        '<table class="history"><thead><tr><th>at</th><th>scope</th><th>attempt</th><th>transition</th>'
        f"<th>details</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
