"""Tasks and flows the end-to-end and chaos tests run (imported by workers as tests.helpers.flows)."""

from __future__ import annotations

from typing import Any

from runner import flow, task


@task(provides="out")
def inc(x: int) -> int:
    return x + 1


@task(provides="seed")
def seed(n: int) -> int:
    return n


@task(provides="leaf")
def leaf(seed: int, i: int = 0) -> int:
    return seed * 1000 + i


@task(provides="total")
def gather(**values: Any) -> int:
    return sum(values.values())


@task(provides="a")
def dia_a(x: int) -> int:
    return x * 2


@task(provides="b")
def dia_b(a: int) -> int:
    return a + 3


@task(provides="c")
def dia_c(a: int) -> int:
    return a * 5


@task(provides="d")
def dia_d(b: int, c: int) -> list[int]:
    return [b, c, b + c]


@task(provides="bad")
def explode(x: int) -> int:
    raise ValueError(f"boom {x}")


@task(provides="big")
def big_result(size: int) -> bytes:
    return b"x" * size


def chain(n: int = 10) -> flow.Flow:
    """n steps, each adding one: v0 -> v1 -> ... -> vn."""
    steps = [inc.bind(f"s{i}", rebind={"x": f"v{i - 1}"}, provides=f"v{i}") for i in range(1, n + 1)]
    return flow.linear(f"chain{n}", *steps)


def diamond() -> flow.Flow:
    return flow.graph("diamond", dia_d, dia_c, dia_b, dia_a)  # order resolved from data


def fanout(width: int = 100) -> flow.Flow:
    leaves = [leaf.bind(f"leaf{i}", rebind={"i": f"i{i}"}, provides=f"r{i}") for i in range(width)]
    join = gather.bind("gather", requires=[f"r{i}" for i in range(width)])
    return flow.linear(f"fanout{width}", seed, flow.unordered("leaves", *leaves), join)


def nested() -> flow.Flow:
    inner_chain = flow.linear(
        "inner_chain",
        inc.bind("n1", rebind={"x": "x"}, provides="y1"),
        inc.bind("n2", rebind={"x": "y1"}, provides="y2"),
    )
    side = flow.linear("side", inc.bind("n3", rebind={"x": "x"}, provides="z1"))
    return flow.linear(
        "nested",
        flow.unordered("middle", inner_chain, side),
        gather.bind("sum", requires=["y2", "z1"], provides="total"),
    )


def failing() -> flow.Flow:
    return flow.linear(
        "failing",
        inc.bind("before", provides="x1", rebind={"x": "x"}),
        explode.bind("explode", rebind={"x": "x1"}),
        inc.bind("after", rebind={"x": "bad"}, provides="never"),
    )


chain10 = chain(10)
fanout100 = fanout(100)
diamond_flow = diamond()
nested_flow = nested()
failing_flow = failing()
big = flow.linear("big", big_result)


@task(provides="never_returned")
def kill_worker(x: int) -> int:
    """Kills the process executing it, every time: a poison task."""
    import os

    os._exit(3)


poison_flow = flow.linear("poison", kill_worker)


@task(provides="slept")
def slow(seconds: float) -> float:
    """Work that takes a while (the task's own duration, not a test waiting on anything)."""
    import threading

    threading.Event().wait(seconds)
    return seconds


slow_flow = flow.linear("slow_flow", slow)


@task(provides="echoed")
def echo_text(text: str) -> str:
    """Gives back its text: a str input, as the command line must pass it (not as JSON)."""
    return text


echo_flow = flow.linear("echo_flow", echo_text)


@task(provides="lonely_out", queue="other")
def lonely(x: int) -> int:
    """Runs on queue "other", which tests consume only when they want to."""
    return x


lonely_flow = flow.linear("lonely_flow", lonely)
