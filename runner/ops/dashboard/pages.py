"""The dashboard's pages: plain functions from a client and the request to HTML.

Everything shown is escaped, and error texts pass through `runner.logs.scrub`: no URL
password or completion token is ever rendered. Control buttons appear only for an operator
(see `runner.ops.http.api`), and are disabled when the run's state does not allow the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlencode

from runner import states
from runner.broker import DeadLetter, DeadLetters
from runner.client import Client, RunInfo
from runner.client.render import cut, show, timestamp
from runner.logs import scrub
from runner.ops.dashboard import svg
from runner.ops.fleet import waiting_unconsumed

PAGE = 50
MAX_HISTORY = 1_000  # history rows a run page shows (the newest)
MAX_TEXT = 16_000  # characters of one error message or traceback shown


def _ts(ms: int | None, precise: bool = False) -> str:
    return escape(timestamp(ms, precise))


def _dur(start: int | None, end: int | None) -> str:
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


# --- runs ------------------------------------------------------------------------------


def _when(value: str | None) -> int:
    """A filter time: empty, epoch ms, or an ISO date/time (UTC)."""
    if not value:
        return 0
    if value.isdecimal():
        return int(value)
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp() * 1000)


def runs_page(client: Client, q: Mapping[str, str]) -> str:
    status = q.get("status") or None
    if status not in (None, *states.RUN_STATES):
        status = None
    flow = (q.get("flow") or "").strip() or None
    since, until = _when(q.get("since")), _when(q.get("until"))
    before = (
        int(q["before"])
        if q.get("before", "").isascii() and q.get("before", "").isdecimal()
        else (until + 1 if until else None)
    )
    runs, cursor = client.page(status, flow, since, before, PAGE)
    counts = client.counts()
    total = counts[None]
    base = {k: v for k, v in (("flow", flow), ("since", q.get("since")), ("until", q.get("until"))) if v}
    links = [f'<a class="{"on" if not status else ""}" href="/runs?{urlencode(base)}">all {total}</a>']
    for s in states.RUN_STATES:
        cls = "on" if s == status else ""
        links.append(
            f'<a class="{cls}" href="/runs?{urlencode({**base, "status": s})}">{badge(s)} {counts[s]}</a>'
        )
    options = "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>'
        for s in ("", *states.RUN_STATES)
    )
    search = (
        '<form class="filters" method="get" action="/runs" role="search">'
        '<label>run id<input name="id" placeholder="go to a run" aria-label="run id"></label>'
        '<button type="submit">go</button></form>'
    )
    filters = (
        '<form class="filters" method="get" action="/runs">'
        f'<label>status<select name="status">{options}</select></label>'
        f'<label>flow<input name="flow" value="{escape(flow or "")}" placeholder="any"></label>'
        f'<label>since (UTC)<input name="since" value="{escape(q.get("since", ""))}" placeholder="2026-11-28T00:00"></label>'
        f'<label>until (UTC)<input name="until" value="{escape(q.get("until", ""))}" placeholder="now"></label>'
        '<button type="submit">filter</button></form>'
    )
    body_rows = []
    for run in runs:
        body_rows.append(
            f'<tr data-run="{escape(run.run_id)}"><td><a href="{run_href(run.run_id)}">{escape(run.run_id)}</a></td>'
            f"<td>{escape(run.flow)}</td><td>{badge(run.status)}</td><td>{_ts(run.created_ms)}</td>"
            f"<td>{_ts(run.finished_ms)}</td><td>{_dur(run.created_ms, run.finished_ms)}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>run</th><th>flow</th><th>status</th><th>created</th><th>finished</th>"
        f"<th>took</th></tr></thead><tbody>{''.join(body_rows) or '<tr><td colspan=6 class=muted>no runs</td></tr>'}"
        "</tbody></table>"
    )
    more = ""
    if cursor is not None:
        nxt = {**base, **({"status": status} if status else {}), "before": str(cursor)}
        more = f'<p><a class="older" href="/runs?{urlencode(nxt)}">older runs →</a></p>'
    return (
        f'<h1>Runs</h1><div class="card counts">{"".join(links)}</div>'
        f'<div class="card">{search}{filters}</div><div class="card">{table}{more}</div>'
    )


# --- one run ---------------------------------------------------------------------------


def _completion_forms(run_id: str, task: str) -> str:
    """An operator's "approve / fail" for a waiting task: its result as JSON, or an error."""
    base = f"{run_href(run_id)}/tasks/{escape(quote(task, safe=''))}"
    return (
        f'<form class="complete" method="post" action="{base}/complete">'
        '<input name="result" value="null" aria-label="result (JSON)" title="the result, as JSON">'
        '<button type="submit">approve</button></form>'
        f'<form class="complete" method="post" action="{base}/fail">'
        '<input name="error" placeholder="why" aria-label="error message" required>'
        '<button type="submit" class="danger">fail</button></form>'
    )


def run_page(client: Client, run_id: str, operator: bool) -> tuple[str, RunInfo]:
    info = client.status(run_id)
    specs = client.specs(run_id)
    history = client.history(run_id)
    actions = []
    if operator:
        for action in states.CONTROL_ALLOWED:
            disabled = "" if states.control_allowed(action, info.status) else " disabled"
            cls = ' class="danger"' if action == "cancel" else ""
            actions.append(
                f'<form class="inline" method="post" action="{run_href(run_id)}/{action}">'
                f'<button type="submit" name="action" value="{action}"{cls}{disabled}>{action}</button></form>'
            )
    head = (
        f'<h1>Run {escape(run_id)} {badge(info.status)}</h1><div class="card">'
        f"<p>flow <b>{escape(info.flow)}</b> · created {_ts(info.created_ms)} · finished {_ts(info.finished_ms)}"
        f" · took {_dur(info.created_ms, info.finished_ms)}</p>{' '.join(actions)}</div>"
    )
    waits = waiting_unconsumed(client, info)
    if waits:
        items = "".join(f"<li>{escape(w.describe())}</li>" for w in waits)
        head += f'<div class="card error" id="unconsumed"><h2>Waiting on a queue nobody consumes</h2><ul>{items}</ul></div>'
    outcome = ""
    if info.result is not None:
        outcome += f'<div class="card"><h2>Result</h2><pre>{escape(scrub(show(info.result)))}</pre></div>'
    if info.error:
        e = info.error
        cause = e.get("cause") or {}
        outcome += (
            f'<div class="card error"><h2>Error</h2><p>in task <b>{escape(str(e.get("task", "")))}</b>: '
            f"<b>{text(e.get('type'), 200)}</b>: {text(e.get('message', ''))}</p>"
        )
        if cause:
            outcome += f"<p>cause: {text(cause.get('type'), 200)}: {text(cause.get('message', ''))}</p>"
        if e.get("traceback"):
            outcome += f'<pre class="traceback">{text(e["traceback"])}</pre>'
        outcome += "</div>"
    task_rows = []
    for name, t in info.tasks.items():
        extra = ""
        if t.status == states.WAITING:
            extra = "waiting for an outside completion (token not shown)"
            if operator and client.config.secret and not t.child:
                extra += _completion_forms(run_id, name)
        if t.progress:
            extra = f"{t.progress[0]:.0%} {text(t.progress[1], 500)}"
        if t.error:
            extra = f"{text(t.error.get('type'), 200)}: {text(t.error.get('message', ''))}"
            if t.error.get("traceback"):
                extra += (
                    f"<details><summary>traceback</summary><pre>{text(t.error['traceback'])}</pre></details>"
                )
        if t.retry_at_ms:
            extra += f" · next attempt at {_ts(t.retry_at_ms)}"
        if t.revert_error:
            extra += f" · revert failed: {text(t.revert_error.get('message', ''))}"
        task_rows.append(
            f'<tr data-task="{escape(name)}"><td>{escape(name)}</td><td>{badge(t.status)}</td><td>{escape(str(t.attempt))}</td>'
            f"<td>{escape(str(t.worker))}</td><td>{millis(t.duration_ms)}</td><td>{extra}</td></tr>"
        )
    tasks = (
        '<div class="card"><h2>Tasks</h2><table><thead><tr><th>task</th><th>state</th><th>attempt</th>'
        f"<th>worker</th><th>took</th><th></th></tr></thead><tbody>{''.join(task_rows)}</tbody></table></div>"
    )
    hist_rows = []
    shown = history[-MAX_HISTORY:]
    if len(shown) < len(history):
        hist_rows.append(
            f"<tr><td colspan=5 class=muted>{len(history) - len(shown)} earlier entries not shown"
            " (ackflow history shows all)</td></tr>"
        )
    for h in shown:
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
        hist_rows.append(
            f"<tr{cls}><td>{_ts(h.at_ms, precise=True)}</td><td>{escape(h.scope)}</td><td>{escape(str(h.attempt or ''))}</td>"
            f"<td>{what}</td><td>{' · '.join(detail)}</td></tr>"
        )
    hist = (
        '<div class="card"><h2>History</h2><table class="history"><thead><tr><th>at</th><th>scope</th>'
        f"<th>attempt</th><th>transition</th><th>details</th></tr></thead><tbody>{''.join(hist_rows)}</tbody></table></div>"
    )
    graph = f'<div class="card"><h2>Flow</h2>{svg.dag(specs, info.tasks)}</div>'
    return head + outcome + graph + tasks + hist, info


def not_found(run_id: str) -> str:
    return f"<h1>No run {escape(run_id)}</h1><p>It never existed, or expired after its retention.</p>"


# --- dead letters ----------------------------------------------------------------------


def dlq_rows(letters: list[DeadLetter], operator: bool) -> str:
    """The dead letters' table rows; a replay form's action holds the id percent-encoded
    whole (an id is outside data: ``../runs/x/cancel?`` must not become another action)."""
    rows = []
    for dl in letters:
        replay = (
            f'<form class="inline" method="post" action="/dlq/{escape(quote(dl.id, safe=""))}/replay">'
            '<button type="submit">replay</button></form>'
            if operator
            else ""
        )
        rows.append(
            f'<tr data-dead="{escape(dl.id)}"><td>{escape(dl.id)}</td><td>{text(dl.reason, 2_000)}</td>'
            f"<td>{escape(dl.queue)}</td><td>{escape(str(dl.delivery_count))}</td>"
            f"<td><code>{escape(scrub(dl.describe_body())[:200])}</code></td><td>{replay}</td></tr>"
        )
    return "".join(rows)


def dlq_page(client: Client, operator: bool) -> str:
    broker = client.broker
    if not isinstance(broker, DeadLetters):
        return "<h1>Dead letters</h1><p class=muted>This broker keeps no dead letters.</p>"
    letters = broker.list_dead(limit=200)
    rows = dlq_rows(letters, operator)
    purge = (
        '<form class="inline" method="post" action="/dlq/purge"><button class="danger" type="submit">purge all</button></form>'
        if operator and letters
        else ""
    )
    return (
        f"<h1>Dead letters ({len(letters)})</h1><div class=card>{purge}<table><thead><tr><th>id</th><th>reason</th>"
        "<th>from queue</th><th>deliveries</th><th>message</th><th></th></tr></thead><tbody>"
        f"{rows or '<tr><td colspan=6 class=muted>none</td></tr>'}</tbody></table></div>"
    )
