"""Flows for the HTTP server's tests in local mode: tasks run in the test's own process, so
gates are in-process events."""

from __future__ import annotations

import threading
from typing import Any

from runner import flow, task

GATES: dict[str, threading.Event] = {}


@task(provides="y")
def echo(x: Any) -> Any:
    return x


@task(provides="held")
def hold(x: Any, gate: str) -> Any:
    GATES[gate].wait(60)
    return x


@task(provides="approved")
def wait_approval(x: Any) -> Any:
    from runner.lazy import defer

    return defer(timeout_s=3600)


echo_flow = flow.linear("http_echo_flow", echo)
hold_flow = flow.linear("http_hold_flow", hold)
lazy_flow = flow.linear("http_lazy_flow", wait_approval)


def long_chain(n: int) -> flow.Flow:
    steps = [echo.bind(f"e{i}", rebind={"x": f"v{i}"}, provides=f"v{i + 1}") for i in range(n)]
    return flow.linear("http_long_chain", *steps)


@task(provides="doubled")
def double(n: int) -> int:
    return n * 2


@task(provides="never")
def boom(x: Any) -> Any:
    raise RuntimeError(f"boom {x}")


double_flow = flow.linear("http_double_flow", double)
boom_flow = flow.linear("http_boom_flow", boom)


markup_map_flow = flow.linear("http_markup_map", flow.map(echo, over="xs", into="x", provides="ys"))
