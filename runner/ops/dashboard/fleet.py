"""The dashboard's Workers, Queues (runner.ops.fleet) and Schedules (runner.client.schedules) pages."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from runner import protocol
from runner.broker import QueueInfo
from runner.client import Client
from runner.client.render import timestamp
from runner.client.schedules import describe_when, state_of
from runner.ops import fleet
from runner.ops.dashboard.pages import run_href
from runner.presence import LIVE


def _ago(now_ms: int, then_ms: int) -> str:
    s = max(0, now_ms - then_ms) / 1000
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.0f} h ago"


def _state(state: str) -> str:
    cls = {"live": "SUCCESS", "lost": "FAILED"}.get(state, "CANCELLED")  # the run badges' colours
    return f'<span class="badge b-{cls}">{escape(state)}</span>'


def workers_page(client: Client) -> str:
    now = protocol.now_ms()
    found = fleet.workers(client.store, client.config, now)
    rows = []
    for w in found:
        running = "".join(
            f'<div><a href="{run_href(r.run_id)}">{escape(r.run_id)}</a> · {escape(r.task)}'
            f" (attempt {r.attempt}) · {_ago(now, r.since_ms)}</div>"
            for r in w.running
        )
        rows.append(
            f'<tr data-worker="{escape(w.id)}"><td>{_state(w.state(now))}</td>'
            f"<td>{escape(w.id)}</td><td>{escape(w.host)}</td>"
            f"<td>{w.pid}</td><td>{escape(', '.join(w.queues))}</td><td>{w.concurrency}</td>"
            f"<td>{running or '<span class=muted>-</span>'}</td><td>{escape(timestamp(w.started_ms, False))}</td>"
            f"<td>{_ago(now, w.heard_ms)}</td><td>{escape(w.version)}</td>"
            f'<td class="muted"><details><summary>{len(w.tasks)}</summary>{escape(", ".join(w.tasks))}'
            "</details></td></tr>"
        )
    live = sum(1 for w in found if w.state(now) == LIVE)
    return (
        f'<h1>Workers ({live} live of {len(found)})</h1><div class="card"><table id="workers"><thead><tr>'
        "<th>state</th><th>worker</th><th>host</th><th>pid</th><th>queues</th><th>concurrency</th>"
        "<th>running now</th><th>started</th><th>last heard</th><th>version</th><th>tasks</th></tr></thead><tbody>"
        f"{''.join(rows) or '<tr><td colspan=11 class=muted>no worker heard from recently</td></tr>'}"
        "</tbody></table><p class=muted>A worker is lost after three silent heartbeats and forgotten "
        f"{client.config.worker_keep_s} s after it was last heard.</p></div>"
    )


def queues_page(client: Client) -> str:
    broker = client.broker
    if not isinstance(broker, QueueInfo):
        return "<h1>Queues</h1><p class=muted>This broker has no queues to show.</p>"
    rows = []
    found = fleet.queue_rows(client.store, broker, client.config)
    for r in found:
        note = (
            "missing on the broker"
            if not r.exists
            else "messages wait and nobody consumes it"
            if r.unconsumed
            else ""
        )
        cls = ' class="fenced"' if r.unconsumed else ""
        rows.append(
            f'<tr data-queue="{escape(r.queue)}"{cls}><td>'
            f"{escape(r.queue)}</td><td class=muted>{escape(r.name)}</td><td>{r.ready}</td>"
            f"<td>{'-' if r.unacked is None else r.unacked}</td><td>{r.consumers}</td>"
            f"<td>{escape(', '.join(r.workers))}</td><td>{escape(note)}</td></tr>"
        )
    return (
        f'<h1>Queues ({len(found)})</h1><div class="card"><table id="queues"><thead><tr><th>queue</th>'
        "<th>name on the broker</th><th>ready</th><th>unacked</th><th>consumers</th><th>live workers</th>"
        f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table><p class=muted>Unacked: deliveries that "
        "live workers hold (RabbitMQ tells clients no such count; unknown for the engine queue).</p></div>"
    )


def schedules_page(client: Client) -> str:
    now = protocol.now_ms()
    found = client.schedules.list()
    rows = []
    for s in found:
        state = state_of(s)
        badge = {"active": "SUCCESS", "paused": "PAUSED"}.get(state, "CANCELLED")
        nxt = (
            "-"
            if s.next_ms is None or s.paused
            else f"{timestamp(s.next_ms, False)} ({_until(now, s.next_ms)})"
        )
        last = f'<a href="{run_href(s.last_run)}">{escape(s.last_run)}</a>' if s.last_run else "-"
        window = f" {s.window_s}s" if s.window_s is not None else ""
        rows.append(
            f'<tr data-schedule="{escape(s.name)}"><td><span class="badge b-{badge}">{state}</span></td>'
            f"<td>{escape(s.name)}</td><td>{escape(s.flow)}</td><td>{escape(describe_when(s))}</td>"
            f"<td>{escape(nxt)}</td><td>{last}</td><td>{s.fired}</td>"
            f"<td>{escape(s.overlap)} / {escape(s.catchup)}{window}</td>"
            f'<td class="muted">{escape(s.note)}</td></tr>'
        )
    return (
        f'<h1>Schedules ({len(found)})</h1><div class="card"><table id="schedules"><thead><tr>'
        "<th>state</th><th>schedule</th><th>flow</th><th>fires</th><th>next firing (UTC)</th>"
        "<th>last run</th><th>runs</th><th>overlap / catch-up</th><th>note</th></tr></thead><tbody>"
        f"{''.join(rows) or '<tr><td colspan=9 class=muted>no schedules: ackflow schedule add</td></tr>'}"
        "</tbody></table></div>"
    )


def _until(now_ms: int, then_ms: int) -> str:
    s = (then_ms - now_ms) / 1000
    if s < 0:
        return "due"
    return f"in {s:.0f} s" if s < 120 else f"in {s / 60:.0f} min" if s < 7200 else f"in {s / 3600:.0f} h"


PAGES: dict[str, tuple[str, Callable[[Client], str]]] = {
    "/workers": ("Workers", workers_page),
    "/queues": ("Queues", queues_page),
    "/schedules": ("Schedules", schedules_page),
}
