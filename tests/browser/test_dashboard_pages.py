"""The dashboard's timeline, task pages, map elements and DAG drawing in a real browser
(headless Chromium, tests/browser/conftest.py), against ``ackflow serve`` with an engine and
a worker started through the CLI on RabbitMQ + Redis. Geometry is read from the browser
itself (getBBox, getPointAtLength): what a person would see overlap, not what the HTML says."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.client import Client
from tests.helpers import dashboard_flows as df
from tests.helpers import flows
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services
OPERATOR = "op-" + uuid.uuid4().hex

# Every problem a person would see in a drawing: boxes overlapping each other or outside the
# picture, texts overlapping each other, a box's text spilling out of it, an edge running
# behind a box, a condition's label over a box.
GEOMETRY = """(sel) => {
  const svg = document.querySelector(sel);
  const vb = svg.viewBox.baseVal;
  const bb = (el) => { const b = el.getBBox(); return {x: b.x, y: b.y, w: b.width, h: b.height}; };
  const over = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const inside = (a, b) => a.x >= b.x - 0.5 && a.y >= b.y - 0.5 && a.x + a.w <= b.x + b.w + 0.5 && a.y + a.h <= b.y + b.h + 0.5;
  const problems = [];
  const boxes = [...svg.querySelectorAll('g.task')].map(g => ({name: g.dataset.task, ...bb(g.querySelector('rect'))}));
  const texts = [...svg.querySelectorAll('text')].map(t => ({
    name: t.closest('g.task') ? t.closest('g.task').dataset.task : null, cls: t.getAttribute('class'), ...bb(t)}));
  const view = {x: vb.x, y: vb.y, w: vb.width, h: vb.height};
  for (let i = 0; i < boxes.length; i++) {
    if (!inside(boxes[i], view)) problems.push('box outside the picture: ' + boxes[i].name);
    for (let j = i + 1; j < boxes.length; j++)
      if (over(boxes[i], boxes[j])) problems.push('boxes overlap: ' + boxes[i].name + ' / ' + boxes[j].name);
  }
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    if (!inside(t, view)) problems.push('text outside the picture: ' + t.name + ' ' + t.cls);
    if (t.name !== null && !inside(t, boxes.find(b => b.name === t.name))) problems.push('text spills out of its box: ' + t.name + ' ' + t.cls);
    if (t.name === null) for (const b of boxes) if (over(t, b)) problems.push('label over a box: ' + b.name);
    for (let j = i + 1; j < texts.length; j++)
      if (over(t, texts[j])) problems.push('texts overlap: ' + t.name + ' ' + t.cls + ' / ' + texts[j].name + ' ' + texts[j].cls);
  }
  const paths = [...svg.querySelectorAll('path.edge')];
  for (const p of paths) {
    const n = p.getTotalLength();
    for (let s = 1; s < n - 1; s += 4) {
      const pt = p.getPointAtLength(s);
      for (const b of boxes)
        if (pt.x > b.x + 1 && pt.x < b.x + b.w - 1 && pt.y > b.y + 1 && pt.y < b.y + b.h - 1) {
          problems.push('edge behind a box: ' + b.name); s = n; break;
        }
    }
  }
  return {problems: [...new Set(problems)].slice(0, 20), boxes: boxes.length, texts: texts.length, edges: paths.length};
}"""


TEXTS_APART = """(sel) => {
  const ts = [...document.querySelector(sel).querySelectorAll('text')].map(t => [t.textContent, t.getBBox()]);
  const out = [];
  for (let i = 0; i < ts.length; i++) for (let j = i + 1; j < ts.length; j++) {
    const [a, b] = [ts[i][1], ts[j][1]];
    if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height)
      out.push(ts[i][0] + ' / ' + ts[j][0]);
  }
  return out;
}"""


def evaluate(page: Any, script: str, arg: Any) -> Any:
    """``page.evaluate``, again if the page's own refresh (every 2 s while its run is active)
    replaced the document while the script ran."""
    for _ in range(5):
        try:
            return page.evaluate(script, arg)
        except Exception as e:  # playwright's Error, imported only with the browser
            if "context was destroyed" not in str(e):
                raise
            page.wait_for_load_state()
    raise AssertionError("the page kept reloading")


def until_task(client: Client, run_id: str, task: str, status: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    watch = client.store.watch(run_id)
    try:
        while True:
            info = client.status(run_id)
            if task in info.tasks and info.tasks[task].status == status:
                return
            assert time.monotonic() < deadline, f"{task} of {run_id} never {status}: {info}"
            watch.wait(0.5)
    finally:
        watch.close()


def serve(procs: Processes, *modules: str) -> str:
    procs.engine()
    procs.start("worker", *modules, "-c", "8")
    return procs.serve(env={"ACKFLOW_OPERATOR_TOKEN": OPERATOR})


def test_a_runs_timeline_and_its_task_pages(page: Any, shots: Path, procs: Processes, client: Client) -> None:
    base = serve(procs, "tests.helpers.dashboard_flows")
    rid = client.submit(df.timeline_flow, {"order": 7}, run_id="timeline-" + uuid.uuid4().hex[:6])
    until_task(client, rid, "approve", "WAITING")

    # The timeline: check_stock's three attempts side by side, failed twice then succeeded;
    # the lazy task waiting (its bar grows until now); finish not started; a labelled axis.
    page.goto(f"{base}/runs/{rid}")
    tries = page.locator('svg.timeline g.row[data-task="check_stock"] rect.bar')
    assert [tries.nth(i).get_attribute("data-outcome") for i in range(tries.count())] == [
        "FAILED",
        "FAILED",
        "SUCCESS",
    ]
    xs = [float(tries.nth(i).get_attribute("x") or 0) for i in range(3)]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert "ConnectionError: stock service timed out (attempt 1)" in (
        tries.nth(0).locator("title").text_content() or ""
    )
    assert page.locator('svg.timeline g.row[data-task="approve"] rect.waiting').count() == 1
    assert page.locator('svg.timeline g.row[data-task="finish"] text.none').text_content() == "pending"
    ticks = page.locator("svg.timeline text.tick").all_text_contents()
    assert ticks[0] == "0 s" and len(ticks) >= 3
    assert "check_stock ×3" in page.locator("svg.timeline").text_content()
    assert evaluate(page, TEXTS_APART, "svg.timeline") == []
    page.locator("#timeline").screenshot(path=str(shots / "dashboard-timeline.png"))

    # From the timeline to the task's page: every attempt with its times, worker and outcome,
    # what it was given and what it provided.
    page.click('svg.timeline g.row[data-task="check_stock"] text.label')
    page.wait_for_url(f"**/runs/{rid}/tasks/check_stock")
    rows = page.locator("#attempts tbody tr")
    assert rows.count() == 3
    first, last = rows.nth(0).inner_text(), rows.nth(2).inner_text()
    assert "FAILED" in first and "ConnectionError: stock service timed out (attempt 1)" in first
    assert "SUCCESS" in last and rows.nth(2).locator("td").nth(5).inner_text() not in ("", "-")
    assert page.locator("#inputs").inner_text().split() == ["Inputs", "prepared", "7"]
    assert '"in stock"' in page.locator("#result").inner_text()
    page.screenshot(path=str(shots / "dashboard-task.png"), full_page=True)

    # From the DAG to the waiting task's page, where an operator approves it.
    page.goto(f"{base}/runs/{rid}")
    page.click('svg.dag g.task[data-task="approve"] rect')
    page.wait_for_url(f"**/runs/{rid}/tasks/approve")
    assert "waiting since" in page.locator("#about").inner_text()
    page.fill("input[name=token]", OPERATOR)
    page.click("text=log in")
    page.goto(f"{base}/runs/{rid}/tasks/approve")
    page.fill("form.complete input[name=result]", '"yes"')
    page.click("form.complete >> text=approve")
    assert "task approve: completed" in page.locator(".flash").inner_text()
    assert procs.wait(client, rid).status == "SUCCESS"

    # The run's task table leads to each task's page; the finished run's timeline is whole.
    page.goto(f"{base}/runs/{rid}")
    assert page.locator('svg.timeline g.row[data-task="finish"] rect.bar').get_attribute("data-outcome") == (
        "SUCCESS"
    )
    page.click('tr[data-task="finish"] a')
    page.wait_for_url(f"**/runs/{rid}/tasks/finish")
    result = page.locator("#result").inner_text()
    assert '"approved": "yes"' in result and '"total": 70' in result


def test_a_map_nodes_elements_are_paged_filtered_and_drilled_into(
    page: Any, shots: Path, procs: Processes, client: Client
) -> None:
    base = serve(procs, "tests.helpers.dashboard_flows")
    rid = client.submit(
        df.map_check_flow, {"count": 250, "bad": "sku-137"}, run_id="map-" + uuid.uuid4().hex[:6]
    )
    assert procs.wait(client, rid).status == "FAILED"

    page.goto(f"{base}/runs/{rid}")
    page.click('svg.dag g.task[data-task="check_item"] rect')
    page.wait_for_url(f"**/runs/{rid}/tasks/check_item")
    assert page.locator("#elements h2").inner_text() == "Elements (1–100 of 250)"
    assert page.locator("#elements tr[data-element]").count() == 100
    page.click("#elements >> text=next →")
    assert page.locator("#elements h2").inner_text() == "Elements (101–200 of 250)"
    assert page.locator("#elements tr[data-element]").first.get_attribute("data-element") == "100"
    bad = page.locator('#elements tr[data-element="137"]').inner_text()
    assert "FAILED" in bad and "ValueError: sku-137 is discontinued" in bad and '"sku-137"' in bad

    # Only the failed elements, then the bad one's own page.
    page.click("#elements .counts >> text=FAILED")
    failed = page.locator("#elements tr[data-element]")
    assert 1 <= failed.count() <= 250
    assert all("FAILED" in failed.nth(i).inner_text() for i in range(failed.count()))
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "dashboard-map.png"))
    page.click('#elements tr[data-element="137"] a')
    page.wait_for_url(f"**/runs/{rid}/tasks/check_item%5B137%5D")
    assert page.locator("h1").inner_text() == "Task check_item[137] FAILED"
    assert '"sku": "sku-137"' in page.locator("#inputs").inner_text()
    assert "raise ValueError" in page.locator("#task-error pre.traceback").inner_text()
    assert "ValueError: sku-137 is discontinued" in page.locator("#attempts").inner_text()
    page.click(".crumbs >> text=check_item")
    page.wait_for_url(f"**/runs/{rid}/tasks/check_item")


@pytest.mark.parametrize(
    ("flow", "inputs", "boxes", "scrolls"),
    [
        (flows.fanout(100), {"n": 1, **{f"i{i}": i for i in range(100)}}, 102, "scrollHeight"),
        (flows.chain(50), {"v0": 0}, 50, "scrollWidth"),
        (df.tangled_flow, {"x": 1}, 6, None),
    ],
    ids=["fanout100", "chain50", "tangled"],
)
def test_wide_and_deep_flows_are_drawn_without_overlaps(
    page: Any,
    shots: Path,
    procs: Processes,
    client: Client,
    flow: Any,
    inputs: dict[str, Any],
    boxes: int,
    scrolls: str | None,
) -> None:
    base = serve(procs, "tests.helpers.flows", "tests.helpers.dashboard_flows")
    rid = client.submit(flow, inputs, run_id=f"{flow.name}-{uuid.uuid4().hex[:6]}")
    procs.wait(client, rid)
    page.goto(f"{base}/runs/{rid}")
    report = page.evaluate(GEOMETRY, "svg.dag")
    assert report["problems"] == [] and report["boxes"] == boxes, report
    if scrolls is not None:  # too big for the page: its frame scrolls, nothing is squeezed
        assert page.evaluate(
            f"(() => {{ const w = document.querySelector('.dag-wrap'); return w.{scrolls} > "
            f"w.{scrolls.replace('scroll', 'client')}; }})()"
        )
    if flow is df.tangled_flow:  # a long name is cut in its box, whole in its <title>
        g = page.locator(f'svg.dag g.task[data-task="{df.LONG}"]')
        assert g.locator("text.name").text_content().endswith("…")
        assert df.LONG in (g.locator("title").text_content() or "")
        assert page.locator("svg.dag text.edge-label").count() == 2
    if flow.name == "fanout100":  # the middle of the picture: the fan-out and the fan-in
        page.locator('svg.dag g.task[data-task="seed"]').scroll_into_view_if_needed()
        page.locator(".dag-wrap").screenshot(path=str(shots / "dashboard-wide.png"))
