"""A task's page, ``/runs/<run>/tasks/<task>``: what it runs, its attempts (start, end,
duration, worker, outcome), its inputs, its result or its error with the traceback, and its
history. A map node's page lists its elements (a page of `ELEMENTS` at a time, optionally
those in one state); each element, ``node[i]``, has a page of its own."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import urlencode

from runner import states
from runner.client import Client
from runner.client.attempts import (
    Attempt,
    attempts_of,
    element_of,
    elements,
    spec_of,
    task_data,
    task_state,
)
from runner.client.render import show, took
from runner.decide.records import TaskState
from runner.define.spec import TaskSpec
from runner.logs import scrub
from runner.ops.dashboard.common import (
    MAX_HISTORY,
    badge,
    completion_forms,
    history_rows,
    millis,
    run_href,
    task_href,
    text,
    ts,
)
from runner.ops.dashboard.timeline import span_text

ELEMENTS = 100  # map elements a page lists
MAX_VALUE = 16_000  # characters of one input or result shown
MAX_CELL = 200  # characters of an element's item or result in its row


class TaskNotFound(LookupError):
    """The run has no task of this name."""


def value(v: Any, limit: int = MAX_VALUE) -> str:
    return escape(scrub(show(v, limit)))


def _attempt_rows(tries: list[Attempt]) -> str:
    rows = []
    for a in tries:
        start = a.started_ms if a.started_ms is not None else a.waiting_ms
        took_ms = a.duration_ms
        waited = (
            f" (waited {span_text(a.ended_ms - a.waiting_ms)})"
            if a.waiting_ms is not None and a.ended_ms is not None and a.ended_ms >= a.waiting_ms
            else ""
        )
        detail = [text(a.error)] if a.error else []
        if a.note:
            detail.append(f'<span class="muted">{text(a.note, 2_000)}</span>')
        if a.revert_started_ms is not None:
            detail.append(f"revert from {ts(a.revert_started_ms, True)} to {ts(a.revert_ended_ms, True)}")
        rows.append(
            f'<tr data-attempt="{a.number}"><td>{a.number}</td><td>{ts(a.scheduled_ms, True)}</td>'
            f"<td>{ts(start, True)}</td><td>{ts(a.ended_ms, True)}</td>"
            f"<td>{'-' if took_ms is None else escape(span_text(took_ms))}{escape(waited)}</td>"
            f"<td>{escape(a.worker) or '-'}</td><td>{badge(a.outcome)}</td><td>{' · '.join(detail)}</td></tr>"
        )
    return (
        '<table id="attempts"><thead><tr><th>attempt</th><th>scheduled</th><th>started</th><th>ended</th>'
        "<th>took</th><th>worker</th><th>outcome</th><th>error, note</th></tr></thead><tbody>"
        f"{''.join(rows) or '<tr><td colspan=8 class=muted>not scheduled yet</td></tr>'}</tbody></table>"
    )


def _values(title: str, ident: str, values: Mapping[str, Any], empty: str) -> str:
    rows = "".join(
        f'<tr data-name="{escape(k)}"><td>{escape(k)}</td><td><pre>{value(v)}</pre></td></tr>'
        for k, v in values.items()
    )
    body = (
        f'<table class="values"><tbody>{rows}</tbody></table>'
        if rows
        else f"<p class=muted>{escape(empty)}</p>"
    )
    return f'<div class="card" id="{ident}"><h2>{escape(title)}</h2>{body}</div>'


def _error(err: Mapping[str, Any]) -> str:
    out = (
        f'<div class="card error" id="task-error"><h2>Error</h2><p><b>{text(err.get("type"), 200)}</b>: '
        f"{text(err.get('message', ''))}</p>"
    )
    if err.get("traceback"):
        out += f'<pre class="traceback">{text(err["traceback"])}</pre>'
    return out + "</div>"


def _about(spec: TaskSpec, st: TaskState, run_id: str, task: str) -> str:
    facts = [f"function <code>{escape(spec.fn)}</code>", f"queue <b>{escape(spec.queue)}</b>"]
    if spec.retry:
        facts.append(f"retry {text(spec.retry.get('attempts', spec.retry), 200)} attempts")
    if spec.timeout_s:
        facts.append(f"timeout {spec.timeout_s:g} s")
    if spec.map is not None:
        facts.append(f"map over <b>{escape(str(spec.args.get(spec.map['param'], '')))}</b>")
    if spec.preds:
        facts.append(
            "after " + ", ".join(f'<a href="{task_href(run_id, p)}">{escape(p)}</a>' for p in spec.preds)
        )
    now = [f"attempt {st.attempt}"]
    if st.worker:
        now.append(f"on {escape(st.worker)}")
    if isinstance(st.duration_ms, int) and not isinstance(st.duration_ms, bool):
        now.append(f"took {escape(took(st.duration_ms, st.waiting_ms, st.finished_ms))}")
    if st.status == states.WAITING:
        now.append(f"waiting since {ts(st.waiting_ms)} for an outside completion (token not shown)")
    if st.retry_at_ms:
        now.append(f"next attempt at {ts(st.retry_at_ms)}")
    if st.child:
        now.append(f'child run <a href="{run_href(st.child)}">{escape(st.child)}</a>')
    return f'<div class="card" id="about"><p>{" · ".join(facts)}</p><p>{" · ".join(now)}</p></div>'


def task_page(
    client: Client, run_id: str, task: str, q: Mapping[str, str], operator: bool
) -> tuple[str, bool]:
    """The page's body, and whether the run is done (its page need not refresh itself).
    Raises `RunNotFound` (no such run) or `TaskNotFound`."""
    info = client.status(run_id)
    specs = client.specs(run_id)
    spec = spec_of(specs, task)
    if spec is None:
        raise TaskNotFound(task)
    st = task_state(client, run_id, task)
    item = element_of(task)
    if item is not None and item[1] >= (task_state(client, run_id, item[0]).items or 0):
        raise TaskNotFound(task)  # past the node's list, or its list not there yet
    crumbs = f'<a href="{run_href(run_id)}">run {escape(run_id)}</a>'
    if item is not None:
        crumbs += f' › <a href="{task_href(run_id, item[0])}">{escape(item[0])}</a>'
    head = (
        f'<p class="crumbs">{crumbs} <span class="muted">({escape(info.flow)}, {escape(info.status)})</span></p>'
        f"<h1>Task {escape(task)} {badge(st.status)}</h1>{_about(spec, st, run_id, task)}"
    )
    if st.status == states.WAITING and operator and client.config.secret and not st.child and item is None:
        head += f'<div class="card">{completion_forms(run_id, task)}</div>'
    history = [h for h in client.history(run_id) if h.scope == task]
    tries = attempts_of(history).get(task, [])
    data = task_data(client, run_id, spec, task)
    attempts = f'<div class="card"><h2>Attempts ({len(tries)})</h2>{_attempt_rows(tries)}</div>'
    body = "" if spec.map is not None else attempts  # a map node: its elements come first
    if st.error:
        body += _error(st.error)
    if st.revert_error:
        body += _error({**st.revert_error, "type": f"revert failed: {st.revert_error.get('type', '')}"})
    if spec.map is not None:
        body += elements_card(client, run_id, task, q) + attempts
    body += _values("Inputs", "inputs", data.inputs, "none stored (not started yet, or no parameters)")
    body += _values("Result", "result", data.outputs, "none (not succeeded, or it provides nothing)")
    shown = history[-MAX_HISTORY:]
    body += f'<div class="card"><h2>History</h2>{history_rows(shown, len(history))}</div>'
    return head + body, info.done


def _number(raw: str | None) -> int:
    return int(raw) if raw and raw.isascii() and raw.isdecimal() and len(raw) < 10 else 0


def elements_card(client: Client, run_id: str, node: str, q: Mapping[str, str]) -> str:
    """The map node's elements: a page of them (``?start=``), of one state (``?status=``)."""
    status = q.get("status") or None
    if status not in (None, *states.TASK_STATES):
        status = None
    start = _number(q.get("start"))
    count, found = elements(client, run_id, node, start, ELEMENTS, status)
    here = task_href(run_id, node)
    links = [f'<a class="{"" if status else "on"}" href="{here}#elements">all</a>']
    for s in (states.SUCCESS, states.FAILED, states.RUNNING, states.SCHEDULED, states.PENDING):
        cls = "on" if s == status else ""
        links.append(f'<a class="{cls}" href="{here}?{urlencode({"status": s})}#elements">{badge(s)}</a>')
    rows = []
    for e in found:
        st = e.state
        if e.has_result:
            shown = f"<code>{value(e.result, MAX_CELL)}</code>"
        elif st.error:
            shown = f'<span class="err">{text(st.error.get("type"), 200)}: {text(st.error.get("message", ""), 500)}</span>'
        else:
            shown = ""
        item = f"<code>{value(e.item, MAX_CELL)}</code>" if e.has_item else ""
        rows.append(
            f'<tr data-element="{e.index}"><td><a href="{task_href(run_id, e.name)}">{e.index}</a></td>'
            f"<td>{item}</td><td>{badge(st.status)}</td><td>{st.attempt}</td>"
            f"<td>{escape(st.worker or '-')}</td><td>{millis(st.duration_ms)}</td><td>{shown}</td></tr>"
        )
    pager = []
    base = {"status": status} if status else {}
    if start > 0:
        prev = urlencode({**base, "start": max(0, start - ELEMENTS)})
        pager.append(f'<a class="newer" href="{here}?{prev}#elements">← previous</a>')
    if start + ELEMENTS < count:
        pager.append(
            f'<a class="older" href="{here}?{urlencode({**base, "start": start + ELEMENTS})}#elements">next →</a>'
        )
    shown_range = f"{start + 1}–{start + len(found)} of {count}" if found else f"none of {count}"
    return (
        f'<div class="card" id="elements"><h2>Elements ({shown_range}{" " + escape(status) if status else ""})</h2>'
        f'<p class="counts">{" ".join(links)}</p><table><thead><tr><th>element</th><th>item</th><th>state</th>'
        "<th>attempt</th><th>worker</th><th>took</th><th>result or error</th></tr></thead><tbody>"
        f"{''.join(rows) or '<tr><td colspan=7 class=muted>no elements</td></tr>'}</tbody></table>"
        f'<p class="pager">{" ".join(pager)}</p></div>'
    )


def no_task(run_id: str, task: str) -> str:
    return (
        f'<h1>No task {escape(task)}</h1><p>Run <a href="{run_href(run_id)}">{escape(run_id)}</a> '
        "has no task of this name.</p>"
    )
