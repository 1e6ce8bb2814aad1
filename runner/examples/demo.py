"""The demo: an order checkout with a parallel step and a nested shipping flow.

ackflow run runner.examples.demo:checkout --input order_id=42
"""

from __future__ import annotations

import time

from runner import current_task, flow, task


@task(provides="order")
def fetch_order(order_id: int) -> dict[str, object]:
    return {
        "id": order_id,
        "items": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B-7", "qty": 1, "price": 24.0}],
    }


@task(provides="reservation")
def reserve_stock(order: dict[str, object]) -> str:
    time.sleep(0.05)  # pretend to call the inventory service
    return f"resv-{order['id']}"


@task(provides="total")
def price_order(order: dict[str, object], discount_pct: float = 0.0) -> float:
    items = order["items"]
    assert isinstance(items, list)
    subtotal = sum(i["qty"] * i["price"] for i in items)
    return float(round(subtotal * (1 - discount_pct / 100), 2))


@task(provides="payment")
def charge_card(order: dict[str, object], total: float) -> dict[str, object]:
    # A real payment call would pass this key so a retried attempt never charges twice.
    return {"charged": total, "idempotency_key": current_task().idempotency_key}


@task(provides="label")
def print_label(order: dict[str, object], reservation: str) -> str:
    return f"LABEL:{order['id']}:{reservation}"


@task(provides="tracking")
def book_courier(label: str) -> str:
    return "TRK-" + label.split(":")[1].zfill(6)


shipping = flow.linear("shipping", print_label, book_courier)

checkout = flow.linear(
    "checkout",
    fetch_order,
    flow.unordered("prepare", reserve_stock, price_order),
    charge_card,
    shipping,
    outputs=["total", "payment", "tracking"],
)
