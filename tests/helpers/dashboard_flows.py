"""Flows for the dashboard's browser tests: a run whose timeline has something to show
(tasks that take time, a task retried twice, a lazy task waiting), a map with a bad element,
and a flow drawn with long names, wide names, a long edge and conditions.

Workers import this module (``ackflow worker tests.helpers.dashboard_flows``). The sleeps are
the tasks' work, so that bars have a length; no test waits on them.
"""

from __future__ import annotations

import time
from typing import Any

from runner import current_task, flow, task
from runner.define.retry import Retry


@task(provides="prepared")
def prepare(order: int) -> int:
    time.sleep(0.3)
    return order


@task(provides="checked", retry=Retry(attempts=3, delay=0.2, on=[ConnectionError]))
def check_stock(prepared: int) -> str:
    time.sleep(0.15)
    attempt = current_task().attempt
    if attempt < 3:
        raise ConnectionError(f"stock service timed out (attempt {attempt})")
    return "in stock"


@task(provides="priced")
def price(prepared: int) -> int:
    time.sleep(0.6)
    return prepared * 10


@task(provides="approved")
def approve(checked: str, priced: int) -> Any:
    from runner.lazy import defer

    return defer(note=f"approve an order of {priced}")


@task(provides="receipt")
def finish(approved: Any, priced: int) -> dict[str, Any]:
    time.sleep(0.1)
    return {"approved": approved, "total": priced}


timeline_flow = flow.graph("timeline_flow", prepare, check_stock, price, approve, finish, outputs=["receipt"])


# --- a map with a bad element -------------------------------------------------------------


@task(provides="items")
def list_items(count: int) -> list[dict[str, Any]]:
    return [{"sku": f"sku-{i}", "qty": i % 7} for i in range(count)]


@task(provides="checked_item")
def check_item(item: dict[str, Any], bad: str) -> str:
    if item["sku"] == bad:
        raise ValueError(f"{item['sku']} is discontinued")
    return f"{item['sku']} ok"


map_check_flow = flow.linear(
    "map_check_flow",
    list_items,
    flow.map(check_item, over="items", into="item", provides="checks", limit=0),
)


# --- drawing: long names, a long edge, conditions ------------------------------------------

LONG = "an_uncommonly_long_task_name_to_check_that_labels_are_cut_to_their_box"
WIDE = "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW"


@task(provides="v")
def begin(x: int) -> int:
    return x


@task
def step(v: int) -> int:
    return v + 1


@task(provides="joined")
def join_all(**values: Any) -> int:
    return sum(v for v in values.values() if isinstance(v, int))


tangled_flow = flow.graph(
    "tangled_flow",
    begin,
    step.bind(LONG, rebind={"v": "v"}, provides="a1"),
    step.bind(WIDE, rebind={"v": "a1"}, provides="a2"),
    step.bind("big_order_branch", rebind={"v": "v"}, provides="b1"),
    step.bind("small_order_branch", rebind={"v": "v"}, provides="b2"),
    join_all.bind("join_everything", requires=["v", "a2"], join="any"),
    edges=[
        ("begin", "big_order_branch", flow.when("v", ">", 1_000_000_000)),
        ("begin", "small_order_branch", flow.when("v", "<=", 1_000_000_000)),
        ("big_order_branch", "join_everything"),
        ("small_order_branch", "join_everything"),
    ],
)
