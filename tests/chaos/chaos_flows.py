"""Flows for the chaos suite. Each task body records every execution, keyed by the
idempotency key it is given, so the checker can count duplicate executions (G2)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import redis

from runner import ForEach, Retry, Times, current_task, flow, start_child, task
from tests.helpers.raw_redis import raw_redis

_client: redis.Redis | None = None


def record(what: str = "") -> None:
    """Record "<key>|<pid>|<ms>" in the chaos Redis (``<key>:revert`` for a revert handler,
    ``what="revert"``); retried through a Redis restart."""
    global _client
    url = os.environ.get("ACKFLOW_CHAOS_REDIS")
    if not url:
        return
    if _client is None:
        _client = raw_redis(url, socket_timeout=5, socket_connect_timeout=2)
    key = current_task().idempotency_key + (f":{what}" if what else "")
    entry = f"{key}|{os.getpid()}|{int(time.time() * 1000)}"
    # One field per execution: a write retried because Redis restarted before it answered
    # (the write itself may have landed) records the execution once, not twice.
    field = uuid.uuid4().hex
    deadline = time.monotonic() + 60
    while True:
        try:
            _client.hsetnx("chaos:executions", field, entry)
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    time.sleep(int(os.environ.get("ACKFLOW_CHAOS_TASK_MS", "0")) / 1000)  # keep work in flight


@task(name="c_inc", provides="out")
def c_inc(x: int) -> int:
    record()
    return x + 1


@task(name="c_seed", provides="seed")
def c_seed(n: int) -> int:
    record()
    return n


@task(name="c_leaf", provides="leaf")
def c_leaf(seed: int) -> int:
    record()
    return seed + int(current_task().task[4:])


@task(name="c_gather", provides="total")
def c_gather(**values: Any) -> int:
    record()
    return sum(values.values())


@task(name="c_explode", provides="bad")
def c_explode(x: int) -> int:
    record()
    raise RuntimeError(f"planned failure {x}")


@task(name="c_flaky", provides="out", retry=Retry(attempts=3, delay=0.2, jitter=False))
def c_flaky(x: int) -> int:
    """Fails its first two attempts: retries (and their timers in Redis) under chaos."""
    record()
    if current_task().attempt < 3:
        raise ConnectionError(f"planned flake, attempt {current_task().attempt}")
    return x + 1


@task(name="c_undoable", provides="out")
def c_undoable(x: int) -> int:
    record()
    return x + 1


@c_undoable.revert
def c_undo(x: int, result: int) -> None:
    record("revert")
    if result != x + 1:
        raise AssertionError(f"revert got result {result} for input {x}")


def chain(n: int = 5) -> flow.Flow:
    steps = [c_inc.bind(f"s{i}", rebind={"x": f"v{i - 1}"}, provides=f"v{i}") for i in range(1, n + 1)]
    return flow.linear(f"c_chain{n}", *steps)


def fanout(width: int = 10) -> flow.Flow:
    leaves = [c_leaf.bind(f"leaf{i}", provides=f"r{i}") for i in range(width)]
    return flow.linear(
        f"c_fanout{width}",
        c_seed,
        flow.unordered("leaves", *leaves),
        c_gather.bind("gather", requires=[f"r{i}" for i in range(width)]),
    )


def nested() -> flow.Flow:
    inner = flow.linear(
        "inner", c_inc.bind("n1", provides="y1"), c_inc.bind("n2", rebind={"x": "y1"}, provides="y2")
    )
    side = flow.linear("side", c_inc.bind("n3", provides="z1"))
    return flow.linear(
        "c_nested",
        flow.unordered("middle", inner, side),
        c_gather.bind("sum", requires=["y2", "z1"], provides="total"),
    )


def failing() -> flow.Flow:
    return flow.linear(
        "c_failing",
        c_inc.bind("before", provides="x1"),
        c_explode.bind("explode", rebind={"x": "x1"}),
        c_inc.bind("after", rebind={"x": "bad"}, provides="never"),
    )


def retrying() -> flow.Flow:
    return flow.linear(
        "c_retrying",
        c_inc.bind("r1", provides="x1"),
        c_flaky.bind("flaky", rebind={"x": "x1"}, provides="x2"),
    )


def reverting() -> flow.Flow:
    return flow.linear(
        "c_reverting",
        c_undoable.bind("u1", provides="x1"),
        c_undoable.bind("u2", rebind={"x": "x1"}, provides="x2"),
        c_explode.bind("explode", rebind={"x": "x2"}),
    )


@task(name="c_spawn", provides="sub")
def c_spawn(x1: int) -> Any:
    """Starts a child run (a chain) and waits for it holding nothing: the child's end
    completes this task, whatever dies between."""
    record()
    return start_child(chain(3), {"v0": x1})


@task(name="c_unwrap", provides="total")
def c_unwrap(sub: dict[str, int]) -> int:
    record()
    return sub["v3"] + 1


def parent() -> flow.Flow:
    return flow.linear("c_parent", c_inc.bind("p1", provides="x1"), c_spawn, c_unwrap)


@task(name="c_pick", provides="picked")
def c_pick(x: int, host: str) -> int:
    """Fails on the "bad" hosts: the scope around it reverts and tries the next value."""
    record()
    if host == "bad":
        raise ConnectionError(f"planned: host {host} unreachable")
    return x + 10


@task(name="c_again", provides="again")
def c_again(picked: int, attempt: int) -> int:
    """Fails the outer scope's first attempt, after the inner scope succeeded in it."""
    record()
    if attempt < 2:
        raise ConnectionError(f"planned: outer attempt {attempt}")
    return picked + attempt


def scoped() -> flow.Flow:
    """Retry controllers under chaos: an inner ForEach scope (two bad values, each
    reverting the scope's undoable task) nested in an outer Times scope whose first attempt
    fails after the inner one succeeded, so the whole inner scope is reverted and re-run."""
    inner = flow.linear(
        "try_hosts",
        c_undoable.bind("reserve", rebind={"x": "x1"}, provides="x2"),
        c_pick.bind("pick", rebind={"x": "x2"}),
        retry=ForEach(["bad", "bad", "good"], provides="host"),
    )
    outer = flow.linear("twice", inner, c_again, retry=Times(2, provides="attempt"))
    return flow.linear("c_scoped", c_inc.bind("first", provides="x1"), outer)


async def arecord() -> None:
    """`record` off the event loop (its Redis write and sleep would block the other
    coroutines); the thread sees the task's context."""
    await asyncio.to_thread(record)


@task(name="c_aleaf", provides="leaf")
async def c_aleaf(seed: int) -> int:
    await arecord()
    await asyncio.sleep(0)
    return seed + int(current_task().task[5:])


@task(name="c_ainc", provides="out")
async def c_ainc(x: int) -> int:
    await arecord()
    return x + 1


def async_mix() -> flow.Flow:
    """async def tasks under chaos: a fan-out of coroutines on the workers' event loops,
    joined by a threaded task, then an async step."""
    leaves = [c_aleaf.bind(f"aleaf{i}", provides=f"r{i}") for i in range(6)]
    return flow.linear(
        "c_async",
        c_seed,
        flow.unordered("aleaves", *leaves),
        c_gather.bind("gather", requires=[f"r{i}" for i in range(6)]),
        c_ainc.bind("last", rebind={"x": "total"}, provides="final"),
    )


# name -> (flow, inputs for run i, expected status, expected result for run i)
MIX = {
    "chain": (chain(5), lambda i: {"v0": i}, "SUCCESS", lambda i: {"v5": i + 5}),
    "fanout": (fanout(10), lambda i: {"n": i}, "SUCCESS", lambda i: {"total": 10 * i + 45}),
    "nested": (nested(), lambda i: {"x": i}, "SUCCESS", lambda i: {"total": 2 * i + 3}),
    "failing": (failing(), lambda i: {"x": i}, "FAILED", lambda i: None),
    "retrying": (retrying(), lambda i: {"x": i}, "SUCCESS", lambda i: {"x2": i + 2}),
    "reverting": (reverting(), lambda i: {"x": i}, "REVERTED", lambda i: None),
    "child": (parent(), lambda i: {"x": i}, "SUCCESS", lambda i: {"total": i + 5}),
    "scoped": (scoped(), lambda i: {"x": i}, "SUCCESS", lambda i: {"again": i + 14}),
    "async": (async_mix(), lambda i: {"n": i}, "SUCCESS", lambda i: {"final": 6 * i + 16}),
}
WEIGHTS = {
    "chain": 4,
    "fanout": 2,
    "nested": 2,
    "failing": 1,
    "retrying": 2,
    "reverting": 1,
    "child": 1,
    "scoped": 1,
    "async": 1,
}
