"""The dashboard's task pages, map elements, timeline and DAG layout, served in-process over
local mode (memory store, in-process broker) and read over loopback: user data escaped
everywhere, odd queries answered, attempts read right from a history, a layout with no
overlaps. The browser tests (tests/browser/test_dashboard_pages.py) check what is seen."""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from runner import protocol, states
from runner.broker import ENGINE_QUEUE, Outgoing
from runner.client import HistoryEntry
from runner.client.attempts import attempts_of
from runner.config import Config
from runner.local import LocalRuntime
from runner.ops.dashboard import layout, timeline
from runner.ops.http import app as http_app
from runner.protocol import Event
from tests.helpers import dashboard_flows as df
from tests.helpers import flows
from tests.helpers import http_flows as hf

EVIL = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(document.domain)>"


@pytest.fixture
def rt() -> Iterator[LocalRuntime]:
    with LocalRuntime(Config()) as runtime:
        http_app.serve_local(runtime)
        yield runtime


def page(rt: LocalRuntime, path: str, code: int = 200) -> str:
    url = urlsplit(rt.server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        got, body = resp.status, resp.read()
    finally:
        conn.close()
    assert got == code, (path, got, body[:300])
    return body.decode()


def held_run(rt: LocalRuntime) -> tuple[str, str]:
    """A run whose task ``hold`` is RUNNING until its gate is set."""
    gate = uuid.uuid4().hex
    hf.GATES[gate] = threading.Event()
    rid = rt.client.submit(hf.hold_flow, {"x": 1, "gate": gate})
    watch = rt.client.store.watch(rid)
    try:
        for _ in range(300):
            task = rt.client.status(rid).tasks.get("hold")
            if task is not None and task.status == "RUNNING":
                break
            watch.wait(0.2)
    finally:
        watch.close()
    assert rt.client.status(rid).tasks["hold"].status == "RUNNING"
    return rid, gate


def assert_inert(html: str) -> None:
    for raw in (EVIL, IMG, "<b>2</b>", "<script", "<img"):
        assert raw not in html, raw


def test_user_data_on_task_pages_and_the_timeline_is_escaped(rt: LocalRuntime) -> None:
    """Inputs, results, errors, map items and worker names are outside data: shown, inert."""
    echo = rt.client.submit(hf.echo_flow, {"x": EVIL})
    boom = rt.client.submit(hf.boom_flow, {"x": IMG})
    mapped = rt.client.submit(hf.markup_map_flow, {"xs": [EVIL, "<b>2</b>", IMG]})
    for rid in (echo, boom, mapped):
        rt.client.wait(rid, 30)
    html = page(rt, f"/runs/{echo}/tasks/echo")
    assert_inert(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.split('id="inputs"')[1].split('id="result"')[0]
    assert "&lt;script&gt;" in html.split('id="result"')[1]
    html = page(rt, f"/runs/{boom}/tasks/boom")
    assert_inert(html)
    assert "RuntimeError: boom &lt;img" in html and "&lt;img src=x" in html.split('id="task-error"')[1]
    html = page(rt, f"/runs/{boom}")
    assert_inert(html)
    assert "boom &lt;img src=x" in html.split('id="timeline"')[1]  # in an attempt's <title>
    html = page(rt, f"/runs/{mapped}/tasks/echo")
    assert_inert(html)
    assert html.count("<tr data-element=") == 3 and "&lt;b&gt;2&lt;/b&gt;" in html
    html = page(rt, f"/runs/{mapped}/tasks/echo%5B1%5D")
    assert_inert(html)
    assert "Task echo[1]" in html and "&lt;b&gt;2&lt;/b&gt;" in html


def test_a_forged_worker_name_is_inert_on_every_page_that_shows_it(rt: LocalRuntime) -> None:
    rid, gate = held_run(rt)
    event = Event(
        protocol.TASK_SUCCEEDED,
        f"result:{rid}:hold:1",
        rid,
        "hold",
        1,
        {"values": {"held": 1}, "worker": IMG},
        0,
    )
    rt.client.broker.publish([Outgoing(ENGINE_QUEUE, event.id, protocol.encode(event))])
    assert rt.client.wait(rid, 30).status == "SUCCESS"
    hf.GATES[gate].set()
    assert rt.client.status(rid).tasks["hold"].worker == IMG  # it got through: the page must cope
    for path in (f"/runs/{rid}", f"/runs/{rid}/tasks/hold"):
        html = page(rt, path)
        assert_inert(html)
        assert "&lt;img src=x onerror" in html, path


@pytest.mark.parametrize(
    "query",
    [
        "start=-1",
        "start=abc",
        "start=99999999999999999999",
        "start=%C2%B2",
        "status=%3Cscript%3E",
        "status=",
        "x=1",
    ],
)
def test_odd_queries_on_a_map_nodes_page_are_answered(rt: LocalRuntime, query: str) -> None:
    rid = rt.client.submit(hf.markup_map_flow, {"xs": list(range(5))})
    rt.client.wait(rid, 30)
    html = page(rt, f"/runs/{rid}/tasks/echo?{query}")
    assert "Elements (1–5 of 5)" in html
    assert_inert(html)


def test_elements_are_paged_and_filtered(rt: LocalRuntime) -> None:
    rid = rt.client.submit(hf.markup_map_flow, {"xs": list(range(250))})
    assert rt.client.wait(rid, 60).status == "SUCCESS"
    html = page(rt, f"/runs/{rid}/tasks/echo")
    assert "Elements (1–100 of 250)" in html and html.count("<tr data-element=") == 100
    assert "?start=100#elements" in html and "previous" not in html
    html = page(rt, f"/runs/{rid}/tasks/echo?start=200")
    assert "Elements (201–250 of 250)" in html and "next →" not in html and "?start=100#elements" in html
    assert page(rt, f"/runs/{rid}/tasks/echo?start=400").count("<tr data-element=") == 0
    html = page(rt, f"/runs/{rid}/tasks/echo?status=SUCCESS&start=240")
    assert "Elements (241–250 of 250 SUCCESS)" in html
    assert "none of 0" in page(rt, f"/runs/{rid}/tasks/echo?status=FAILED")


def test_a_task_page_is_404_for_a_task_or_run_that_does_not_exist(rt: LocalRuntime) -> None:
    rid = rt.client.submit(hf.echo_flow, {"x": 1})
    rt.client.wait(rid, 30)
    assert "No task nope" in page(rt, f"/runs/{rid}/tasks/nope", 404)
    assert "No task echo[0]" in page(rt, f"/runs/{rid}/tasks/echo%5B0%5D", 404)  # not a map
    mapped = rt.client.submit(hf.markup_map_flow, {"xs": [1, 2]})
    rt.client.wait(mapped, 30)
    assert "Task echo[1]" in page(rt, f"/runs/{mapped}/tasks/echo%5B1%5D")
    assert "No task echo[2]" in page(rt, f"/runs/{mapped}/tasks/echo%5B2%5D", 404)  # past its list
    assert "No run nope" in page(rt, "/runs/nope/tasks/echo", 404)
    assert_inert(page(rt, f"/runs/{rid}/tasks/%3Cscript%3E", 404))
    html = page(rt, f"/runs/{rid}")
    assert f'href="/runs/{rid}/tasks/echo"' in html  # the tasks table and the DAG link to it


def entry(at: int, scope: str, attempt: int, old: str, new: str, **extra: Any) -> HistoryEntry:
    return HistoryEntry(at, "e", "k", scope, old, new, attempt, extra)


def test_attempts_are_read_from_a_history() -> None:
    S, R, F, W, OK = states.SCHEDULED, states.RUNNING, states.FAILED, states.WAITING, states.SUCCESS
    found = attempts_of(
        [
            entry(0, "run", 0, states.PENDING, R),
            entry(10, "t", 1, states.PENDING, S),
            entry(20, "t", 1, S, R, worker="w1"),
            entry(50, "t", 1, R, F, error_type="ValueError", error="bad", note="retry 2 of 2 in 1 s"),
            entry(60, "t", 1, F, F, note="fenced: a late result"),  # no step
            entry(1050, "t", 2, F, S),
            entry(1060, "t", 2, S, R, worker="w2"),
            entry(1070, "t", 2, R, W),
            entry(5070, "t", 2, W, OK, worker="w2"),
            entry(5080, "t", 2, OK, states.REVERTING),
            entry(5090, "t", 2, states.REVERTING, states.REVERTED),
            entry(70, "m[3]", 1, states.PENDING, S),
        ]
    )
    assert sorted(found) == ["m[3]", "t"]
    first, second = found["t"]
    assert (first.scheduled_ms, first.started_ms, first.ended_ms, first.duration_ms) == (10, 20, 50, 30)
    assert (first.outcome, first.worker, first.error, first.note) == (
        F,
        "w1",
        "ValueError: bad",
        "retry 2 of 2 in 1 s",
    )
    assert (second.started_ms, second.waiting_ms, second.ended_ms, second.duration_ms) == (
        1060,
        1070,
        5070,
        4010,
    )
    assert (second.revert_started_ms, second.revert_ended_ms, second.outcome) == (5080, 5090, states.REVERTED)
    assert found["m[3]"][0].outcome == S and found["m[3]"][0].ended_ms is None


def test_a_timeline_axis_has_round_steps_and_readable_labels() -> None:
    assert [timeline.tick_step(ms) for ms in (1, 7, 80, 1_500, 90_000, 7_200_000)] == [
        1, 1, 10, 200, 20_000, 1_000_000,
    ]  # fmt: skip
    assert [timeline.span_text(ms) for ms in (0, 250, 1_500, 150_000, 9_000_000)] == [
        "0 s", "250 ms", "1.5 s", "2.5 min", "2.5 h",
    ]  # fmt: skip


@pytest.mark.parametrize("flow", [flows.fanout(100), flows.chain(50), df.tangled_flow, flows.nested_flow])
def test_the_layout_puts_no_box_over_another_and_all_inside(flow: Any) -> None:
    specs = flow.compile().tasks
    lay = layout.layout({n: s.preds for n, s in specs.items()})
    boxes = sorted(lay.boxes.values())
    for x, y in boxes:
        assert 0 <= x and x + layout.W <= lay.width and 0 <= y and y + layout.H <= lay.height
    for (x1, y1), (x2, y2) in zip(boxes, boxes[1:], strict=False):  # sorted: neighbours in a column
        assert x1 != x2 or y2 >= y1 + layout.H + layout.GAP_Y
    for e in lay.edges:  # every point of an edge on a column's border: the curves stay in the gaps
        for px, _ in e.points:
            assert any(px in (x, x + layout.W) for x, _ in boxes), (e, px)
    assert len(lay.edges) == sum(len(s.preds) for s in specs.values())


def test_a_name_is_cut_to_its_box_and_whole_in_its_title() -> None:
    from runner.ops.dashboard import svg

    drawing = svg.dag(df.tangled_flow.compile().tasks, {})
    assert f"<title>{df.LONG}: PENDING</title>" in drawing
    assert f">{df.LONG}<" not in drawing and "an_uncommonly_long_task_n" in drawing
    assert svg.fit("short", 12, 184) == "short" and svg.fit("x" * 200, 12, 184).endswith("…")


def test_a_timeline_draws_at_most_its_row_limit_and_counts_the_rest() -> None:
    from runner.client import RunInfo, TaskInfo

    names = [f"t{i}" for i in range(timeline.MAX_ROWS + 50)]
    info = RunInfo("r", states.RUNNING, "f", 1_000, tasks={n: TaskInfo(n, states.PENDING, 0) for n in names})
    history = [entry(1_000 + i, n, 1, states.PENDING, states.SCHEDULED) for i, n in enumerate(names)]
    drawing = timeline.timeline(info, history, lambda n: f"/t/{n}", 5_000)
    assert drawing.count('<g class="row"') == timeline.MAX_ROWS and "50 more tasks not drawn" in drawing
    assert 'href="/t/t0"' in drawing and 'data-task="t299"' in drawing and 'data-task="t300"' not in drawing
