"""No-op tasks and flows for benchmarks: the cost measured is ackflow's, not the tasks'."""

from __future__ import annotations

from typing import Any

from runner import flow, task


@task(name="bench_noop", provides="out")
def noop(x: int = 0) -> int:
    return x


@task(name="bench_join", provides="joined")
def join(**values: Any) -> int:
    return len(values)


def chain(n: int = 10) -> flow.Flow:
    steps = [noop.bind(f"s{i}", rebind={"x": f"v{i - 1}"}, provides=f"v{i}") for i in range(1, n + 1)]
    return flow.linear(f"bench_chain{n}", *steps)


def fanout(width: int) -> flow.Flow:
    leaves = [noop.bind(f"leaf{i}", rebind={"x": "v0"}, provides=f"r{i}") for i in range(width)]
    return flow.linear(
        f"bench_fanout{width}",
        noop.bind("root", rebind={"x": "v0"}, provides="root_out"),
        flow.unordered("leaves", *leaves),
        join.bind("join", requires=["root_out"]),
    )


chain10 = chain(10)


@task(name="bench_busy", provides="out")
def busy(x: int = 0, ms: int = 20) -> int:
    """Holds its worker thread ``ms`` milliseconds (work in flight for the failover case)."""
    import threading

    threading.Event().wait(ms / 1000)
    return x


def busy_chain(n: int = 10) -> flow.Flow:
    steps = [busy.bind(f"b{i}", rebind={"x": f"v{i - 1}"}, provides=f"v{i}") for i in range(1, n + 1)]
    return flow.linear(f"bench_busy{n}", *steps)
