"""The dashboard's pages: plain functions from a client and the request to HTML.

Everything shown is escaped, and error texts pass through `runner.logs.scrub`: no URL
password or completion token is ever rendered. Control buttons appear only for an operator
(see `runner.ops.http.api`), and are disabled when the run's state does not allow the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from html import escape
from urllib.parse import quote, urlencode

from runner import states
from runner.broker import DeadLetter, DeadLetters
from runner.client import Client, RunInfo
from runner.client.render import show
from runner.logs import scrub
from runner.ops.dashboard import svg
from runner.ops.dashboard.common import (
    MAX_HISTORY,
    MAX_TEXT,
    badge,
    completion_forms,
    dur,
    history_rows,
    layout,
    millis,
    run_href,
    task_href,
    text,
    ts,
)
from runner.ops.dashboard.timeline import timeline
from runner.ops.fleet import waiting_unconsumed
from runner.protocol import now_ms

__all__ = [  # the shared parts, for the pages elsewhere and the tests
    "MAX_HISTORY", "MAX_TEXT", "badge", "dlq_page", "layout", "millis", "not_found", "run_href",
    "run_page", "runs_page", "text",
]  # fmt: skip

PAGE = 50
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
            f"<td>{escape(run.flow)}</td><td>{badge(run.status)}</td><td>{ts(run.created_ms)}</td>"
            f"<td>{ts(run.finished_ms)}</td><td>{dur(run.created_ms, run.finished_ms)}</td></tr>"
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
        f"<p>flow <b>{escape(info.flow)}</b> · created {ts(info.created_ms)} · finished {ts(info.finished_ms)}"
        f" · took {dur(info.created_ms, info.finished_ms)}</p>{' '.join(actions)}</div>"
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
                extra += completion_forms(run_id, name)
        if t.progress:
            extra = f"{t.progress[0]:.0%} {text(t.progress[1], 500)}"
        if t.error:
            extra = f"{text(t.error.get('type'), 200)}: {text(t.error.get('message', ''))}"
            if t.error.get("traceback"):
                extra += (
                    f"<details><summary>traceback</summary><pre>{text(t.error['traceback'])}</pre></details>"
                )
        if t.retry_at_ms:
            extra += f" · next attempt at {ts(t.retry_at_ms)}"
        if t.revert_error:
            extra += f" · revert failed: {text(t.revert_error.get('message', ''))}"
        task_rows.append(
            f'<tr data-task="{escape(name)}"><td><a href="{task_href(run_id, name)}">{escape(name)}</a></td><td>{badge(t.status)}</td><td>{escape(str(t.attempt))}</td>'
            f"<td>{escape(str(t.worker))}</td><td>{millis(t.duration_ms)}</td><td>{extra}</td></tr>"
        )
    tasks = (
        '<div class="card"><h2>Tasks</h2><table><thead><tr><th>task</th><th>state</th><th>attempt</th>'
        f"<th>worker</th><th>took</th><th></th></tr></thead><tbody>{''.join(task_rows)}</tbody></table></div>"
    )
    shown = history[-MAX_HISTORY:]
    hist = f'<div class="card"><h2>History</h2>{history_rows(shown, len(history))}</div>'
    link = partial(task_href, run_id)
    graph = f'<div class="card"><h2>Flow</h2>{svg.dag(specs, info.tasks, link)}</div>'
    gantt = (
        f'<div class="card" id="timeline"><h2>Timeline</h2>{timeline(info, history, link, now_ms())}</div>'
    )
    return head + outcome + graph + tasks + gantt + hist, info


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
