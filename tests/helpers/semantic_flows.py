"""Tasks and flows for retries, timeouts, leases, compensation, joins and control.

Workers import this module (``ackflow worker tests.helpers.semantic_flows``). Tasks that must wait
for the test block on a Redis *gate* (a list the test pushes to), so tests synchronise on
events, never on sleeps; every wait is bounded.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from runner import Failure, current_task, flow, task
from runner.define.retry import Retry
from tests.helpers.raw_redis import raw_redis

GATE_TIMEOUT_S = 60


def _redis() -> Any:
    return raw_redis(os.environ.get("ACKFLOW_REDIS_URL", "redis://127.0.0.1:6379/0"))


def gate(key: str) -> bool:
    """Block until the test opens ``key`` (pushes to it); False after GATE_TIMEOUT_S."""
    r = _redis()
    try:
        return r.blpop([key], timeout=GATE_TIMEOUT_S) is not None
    finally:
        r.close()


def open_gate(key: str, times: int = 1) -> None:
    r = _redis()
    try:
        r.rpush(key, *(["1"] * times))
        r.expire(key, 600)
    finally:
        r.close()


def record(key: str, value: str) -> None:
    """Append to a Redis list the test reads (side effects, counted exactly)."""
    r = _redis()
    try:
        r.rpush(key, value)
        r.expire(key, 600)
    finally:
        r.close()


def recorded(key: str) -> list[str]:
    r = _redis()
    try:
        return [v.decode() for v in r.lrange(key, 0, -1)]
    finally:
        r.close()


# --- retries ---------------------------------------------------------------------------


@task(provides="flaky_out", retry=Retry(attempts=4, delay=0.05, max_delay=0.2, on=[ConnectionError]))
def flaky(fail_times: int, log: str) -> str:
    a = current_task().attempt
    record(log, f"flaky:{a}")
    if a <= fail_times:
        raise ConnectionResetError(f"attempt {a} failed")  # a subclass of ConnectionError
    return f"ok after {a}"


retry_flow = flow.linear("retry_flow", flaky)


@task(provides="picky_out", retry=Retry(attempts=4, delay=0.05, on=[ConnectionError]))
def picky(log: str) -> str:
    record(log, f"picky:{current_task().attempt}")
    raise ValueError("not a connection problem: not retried")


picky_flow = flow.linear("picky_flow", picky)


# --- timeouts --------------------------------------------------------------------------


@task(provides="slow_out", timeout=0.5, retry=Retry(attempts=2, delay=0))
def hangs_first(gate_key: str) -> str:
    a = current_task().attempt
    if a == 1:
        gate(gate_key)  # held until the test opens it: far past the timeout
        return "late-1"
    return f"fresh-{a}"


timeout_flow = flow.linear("timeout_flow", hangs_first)


@task(provides="never")
def waits_for_gate(gate_key: str) -> str:
    gate(gate_key)
    return "opened"


deadline_flow = flow.linear("deadline_flow", waits_for_gate)


# --- compensation ----------------------------------------------------------------------


@task(provides="reserved")
def reserve(item: str, log: str) -> str:
    record(log, "reserve")
    return f"res-{item}"


@reserve.revert
def unreserve(item: str, log: str, result: str) -> None:
    if result != f"res-{item}":
        raise AssertionError(f"unreserve got result {result!r}")
    record(log, f"unreserve:{result}")


@task(provides="charged")
def charge(reserved: str, log: str, fail_refund: bool = False) -> str:
    record(log, "charge")
    return f"ch-{reserved}"


@charge.revert
def refund(reserved: str, log: str, result: str, fail_refund: bool = False) -> None:
    if fail_refund:
        raise RuntimeError("payment provider refused the refund")
    record(log, f"refund:{result}")


@task(provides="shipped")
def ship(charged: str, log: str, fail_ship: bool) -> str:
    record(log, "ship")
    if fail_ship:
        raise RuntimeError("no courier available")
    return f"sh-{charged}"


order_flow = flow.linear("order_flow", reserve, charge, ship)


# --- compensation as TaskFlow defines it: the failed task's own handler, map handlers -----


@task(provides="shipped")
def ship_partly(charged: str, log: str) -> str:
    record(log, "ship-partly")
    raise RuntimeError("courier lost the parcel")


@ship_partly.revert
def unship(charged: str, log: str, result: Any, failure: Failure | None) -> None:
    """Takes ``failure``: called for its own task's failure too (TaskFlow reverts it)."""
    what = "none" if failure is None else f"{failure.type}:{failure.message}:{failure.attempt}"
    record(log, f"unship:{result}:{what}")


failed_ship_flow = flow.linear("failed_ship_flow", reserve, charge, ship_partly)


@task(provides="booked")
def book(seat: int, log: str) -> str:
    record(log, f"book:{seat}")
    return f"seat-{seat}"


@book.revert
def unbook(seat: int, log: str, result: str) -> None:
    record(log, f"unbook:{seat}:{result}")


@task(provides="paid")
def pay_seats(bookings: list[str], log: str) -> str:
    raise RuntimeError(f"card declined for {len(bookings)} seats")


seats_flow = flow.linear(
    "seats_flow", reserve, flow.map(book, over="seats", into="seat", provides="bookings", limit=1), pay_seats
)


# --- compensation order: successors before predecessors, even when still running ---------


@task(provides="dsrc")
def dia_src(log: str) -> str:
    record(log, "src")
    return "s"


@dia_src.revert
def dia_src_undo(log: str) -> None:
    record(log, "undo:src")


@task(provides="dleft")
def dia_left(dsrc: str, log: str, gate_key: str) -> str:
    gate(f"{gate_key}:left")  # opened by dia_right once it runs: it is running when this fails
    record(log, "left")
    raise ValueError("left breaks")


@dia_left.revert
def dia_left_undo(log: str) -> None:
    record(log, "undo:left")


@task(provides="dright")
def dia_right(dsrc: str, log: str, gate_key: str) -> str:
    record(log, "right")
    open_gate(f"{gate_key}:left")
    gate(f"{gate_key}:right")  # held by the test while the run starts reverting
    return "r"


@dia_right.revert
def dia_right_undo(log: str) -> None:
    record(log, "undo:right")


@task(provides="djoin")
def dia_join(dleft: str, dright: str, log: str) -> str:
    record(log, "join")
    return "j"


@dia_join.revert
def dia_join_undo(log: str) -> None:
    record(log, "undo:join")


diamond_flow = flow.graph("diamond_flow", dia_src, dia_left, dia_right, dia_join, outputs=["djoin"])


@task(provides="hogged")
def hog(gate_key: str) -> str:
    """Keeps a one-slot worker busy, so the requests queued behind it wait unstarted."""
    gate(gate_key)
    return "h"


@task(provides="qsrc", queue="other")
def q_src(log: str) -> str:
    record(log, "src")
    return "s"


@q_src.revert
def q_src_undo(log: str) -> None:
    record(log, "undo:src")


@task(provides="qnext")
def q_next(qsrc: str, log: str) -> str:
    record(log, "next")
    return "n"


@q_next.revert
def q_next_undo(log: str) -> None:
    record(log, "undo:next")


@task(provides="qbad", queue="other")
def q_bad(qsrc: str) -> str:
    raise ValueError("bad breaks")


# hog and q_next share the default queue (hog first); q_src and q_bad run on "other"
queued_flow = flow.graph("queued_flow", hog, q_src, q_next, q_bad, outputs=["qnext"])

# --- joins -----------------------------------------------------------------------------


@task(provides="p1")
def quick1(x: int) -> int:
    return x + 1


@task(provides="p2")
def quick2(x: int) -> int:
    return x + 2


@task(provides="p3")
def gated3(x: int, gate_key: str) -> int:
    gate(gate_key)
    return x + 3


@task(provides="joined")
def count_inputs(p1: int | None = None, p2: int | None = None, p3: int | None = None) -> list[int]:
    return sorted(v for v in (p1, p2, p3) if v is not None)


def join_flow(join: str | int) -> flow.Flow:
    return flow.graph(
        f"join_{join}",
        quick1,
        quick2,
        gated3,
        count_inputs.bind(join=join),
        edges=[("quick1", "count_inputs"), ("quick2", "count_inputs"), ("gated3", "count_inputs")],
        outputs=["joined"],
    )


join_any_flow = join_flow("any")
join_two_flow = join_flow(2)


# --- control ---------------------------------------------------------------------------


@task(provides="s1")
def step1(x: int, log: str) -> int:
    record(log, "step1")
    return x + 1


@task(provides="s2")
def step2(s1: int, log: str, flag: str) -> int:
    record(log, "step2")
    r = _redis()
    try:
        if not r.exists(flag):
            raise RuntimeError(f"flag {flag} is not set")
    finally:
        r.close()
    return s1 + 1


@task(provides="s3")
def step3(s2: int, log: str) -> int:
    record(log, "step3")
    return s2 + 1


steps_flow = flow.linear("steps_flow", step1, step2, step3)


# --- long work, progress, cancellation ---------------------------------------------------


@task(provides="long_out")
def long_once(gate_key: str, log: str) -> str:
    """Attempt 1 waits for the gate (or cancellation); later attempts return at once."""
    ctx = current_task()
    record(log, f"long:{ctx.attempt}")
    if ctx.attempt > 1:
        return f"fresh-{ctx.attempt}"
    ctx.progress(0.5, "halfway")
    gate(gate_key)
    return "late-1"


long_flow = flow.linear("long_flow", long_once)


@task(provides="stopped")
def until_cancelled(log: str) -> str:
    ctx = current_task()
    ctx.progress(0.1, "working")
    stop = threading.Event()
    for _ in range(GATE_TIMEOUT_S * 10):
        if ctx.cancel_requested:
            record(log, "saw-cancel")
            return "stopped"
        stop.wait(0.1)
    return "never cancelled"


cancel_flow = flow.linear("cancel_flow", until_cancelled)


def describe(info: Any) -> dict[str, str]:
    return {n: t.status for n, t in info.tasks.items()}


@task(provides="g1")
def gated_step(x: int, gate_key: str) -> int:
    gate(gate_key)
    return x + 1


@task(provides="g2")
def after_gate(g1: int) -> int:
    return g1 + 1


pause_flow = flow.linear("pause_flow", gated_step, after_gate)


@task(provides="passed")
def gated_record(item: int, gate_key: str, log: str) -> int:
    """Waits for the gate, then records that it ran: a body that runs is seen."""
    gate(gate_key)
    record(log, str(item))
    return item


# Two elements on a worker of one slot: the second request waits in the queue.
held_flow = flow.linear("held_flow", flow.map(gated_record, over="items", into="item", limit=0))


# --- conditional edges -------------------------------------------------------------------


@task(provides="amount")
def quote(order: int) -> int:
    return order * 10


@task(provides="approval")
def manual_approval(amount: int) -> str:
    return f"approved {amount} by hand"


@task(provides="notice")
def notify_approver(approval: str) -> str:
    return f"told: {approval}"


@task(provides="auto")
def auto_approval(amount: int) -> str:
    return f"auto-approved {amount}"


@task(provides="summary")
def summarise(
    amount: int, approval: str | None = None, notice: str | None = None, auto: str | None = None
) -> str:
    return " / ".join(v for v in (approval, notice, auto) if v)


approval_flow = flow.graph(
    "approval_flow",
    quote,
    manual_approval,
    notify_approver,
    auto_approval,
    summarise,
    edges=[
        ("quote", "manual_approval", flow.when("amount", ">", 100)),
        ("quote", "auto_approval", flow.when("amount", "<=", 100)),
    ],
    outputs=["summary"],
)


# --- map (with-items) --------------------------------------------------------------------


@task(provides="ids")
def make_ids(count: int) -> list[int]:
    return list(range(count))


@task(provides="squared", retry=Retry(attempts=3, delay=0))
def square(n: int, fail_on: int = -1) -> int:
    if n == fail_on and current_task().attempt < 3:
        raise ConnectionError(f"item {n} is flaky")
    if n == fail_on - 1000:
        raise ValueError(f"item {n} is bad")
    return n * n


@task(provides="total_sq")
def add_up(squares: list[int]) -> int:
    return sum(squares)


map_flow = flow.linear(
    "map_flow",
    make_ids,
    flow.map(square, over="ids", provides="squares", limit=50),
    add_up,
    outputs=["squares", "total_sq"],
)


# --- lazy tasks --------------------------------------------------------------------------


@task(provides="req")
def open_request(user: str) -> dict[str, str]:
    return {"user": user}


@task(provides=("approved", "approver"), retry=Retry(attempts=2, delay=0))
def await_decision(req: dict[str, str], log: str, wait_s: float = 0) -> Any:
    """A lazy task: hands its completion token to 'the outside' (a Redis list), then waits."""
    from runner.lazy import defer

    ctx = current_task()
    record(log, f"{ctx.attempt}|{ctx.completion_token}")
    return defer(timeout_s=wait_s or None, note=f"decide for {req['user']}")


@task(provides="outcome")
def act_on(req: dict[str, str], approved: bool, approver: str) -> str:
    return f"{req['user']}: {'granted' if approved else 'denied'} by {approver}"


lazy_flow = flow.linear("lazy_flow", open_request, await_decision, act_on)


@task(provides=("approved", "approver"))
def answers_early(req: dict[str, str], log: str, gate_key: str = "", self_complete: bool = False) -> Any:
    """A lazy task answered before its defer() is recorded: by itself, through the client
    (``self_complete``), or by 'the outside' while it waits on a gate before deferring."""
    from runner.client import Client
    from runner.lazy import defer

    ctx = current_task()
    if self_complete:
        client = Client.from_env()
        try:
            record(log, client.complete(ctx.completion_token, {"approved": True, "approver": "self"}))
        finally:
            client.close()
    else:
        record(log, f"{ctx.attempt}|{ctx.completion_token}")
        gate(gate_key)
    return defer(note="answered already")


early_flow = flow.linear("early_flow", open_request, answers_early, act_on)


# --- child runs ----------------------------------------------------------------------------


@task(provides="child_total")
def child_sum(numbers: list[int], gate_key: str = "") -> int:
    """A child flow's task; waits for the test's gate when given one."""
    if gate_key:
        gate(gate_key)
    return sum(numbers)


child_flow = flow.linear("child_flow", child_sum)


@task(provides="summed")
def start_summing(numbers: list[int], gate_key: str = "") -> Any:
    """Starts the child run and returns at once: the task waits holding no thread."""
    from runner import start_child

    return start_child(child_flow, {"numbers": numbers, **({"gate_key": gate_key} if gate_key else {})})


@task(provides="report")
def report_sum(summed: dict[str, int]) -> str:
    return f"total {summed['child_total']}"


parent_flow = flow.linear("parent_flow", start_summing, report_sum)


# --- retry scopes (issue 16, item 1) -----------------------------------------------------------


@task(provides="host_booking")
def book_host(host: str, log: str) -> str:
    record(log, f"book:{host}")
    return f"b-{host}"


@book_host.revert
def unbook_host(log: str, result: str) -> None:
    record(log, f"unbook:{result}")


@task(provides="configured")
def configure_host(host_booking: str, host: str, round_no: int, bad: list[str], log: str) -> str:
    record(log, f"configure:{host}:{round_no}")
    if f"{host}:{round_no}" in bad:
        raise RuntimeError(f"{host} refused in round {round_no}")
    return f"ok-{host}"


def _scoped_flow() -> Any:
    from runner import ForEach, Times

    hosts = flow.linear("try_hosts", book_host, configure_host, retry=ForEach(["h1", "h2"], provides="host"))
    rounds = flow.linear("rounds", hosts, retry=Times(2, provides="round_no"))
    return flow.linear("scoped", reserve, rounds)


scoped_flow = _scoped_flow()
