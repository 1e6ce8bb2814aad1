"""``async def`` tasks in the worker (issue 16, item 4): run on its event loop, with the same
results, timeouts, cancellation, progress and leases as threaded tasks, and a bound of their
own. The worker is driven step by step on the in-process transport; the tasks wait on gates
the test opens, never on sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from runner import current_task, flow, protocol, task
from runner.broker import Outgoing
from runner.broker.local import LocalBroker
from runner.config import Config
from runner.define.context import TaskContext
from runner.define.lazy import defer
from runner.define.tasks import Registry
from runner.protocol import Event, TaskRequest
from tests.helpers.harness import Harness
from workers.execute import execute, execute_async
from workers.loop import Worker

reg = Registry()


class Gate:
    """Async tasks wait here until the test opens it; the test waits until they entered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entered = threading.Semaphore(0)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.inside = 0
        self.most_inside = 0
        self.cancelled = threading.Event()  # a waiter was cancelled (CancelledError inside)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.append((loop, fut))
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self._entered.release()
        try:
            await fut
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            with self._lock:
                self.inside -= 1

    def entered(self, n: int = 1) -> None:
        for _ in range(n):
            assert self._entered.acquire(timeout=10), "an async task never reached the gate"

    def open_one(self) -> None:
        with self._lock:
            loop, fut = self._waiters.pop(0)
        loop.call_soon_threadsafe(fut.set_result, None)


GATES: dict[str, Gate] = {}
SEEN: dict[str, Any] = {}


@pytest.fixture
def gate() -> Gate:
    GATES["g"] = Gate()
    SEEN.clear()
    return GATES["g"]


@task(provides="out", registry=reg)
async def fetch(x: int) -> int:
    ctx = current_task()

    async def child() -> str:  # an asyncio task it starts sees the same context
        return current_task().idempotency_key

    SEEN["key"], SEEN["child_key"] = ctx.idempotency_key, await asyncio.create_task(child())
    SEEN["thread"] = threading.current_thread().name
    await asyncio.sleep(0)
    return x * 10


@task(registry=reg)
async def breaks() -> None:
    await asyncio.sleep(0)
    raise ValueError("bad input")


@task(provides="out", registry=reg)
async def held(name: str) -> str:
    await GATES["g"].wait()
    return name


@task(provides="out", registry=reg, timeout=0.2)
async def hangs() -> str:
    await GATES["g"].wait()  # never opened: cancelled at the timeout
    return "late"


@task(provides="out", registry=reg)
async def reports_progress() -> str:
    current_task().progress(0.5, "halfway")
    await GATES["g"].wait()
    return "done"


@task(provides="out", registry=reg)
def quick() -> int:
    return 1


@task(provides="booking", registry=reg)
async def book() -> str:
    return "B-1"


@book.revert
async def unbook(result: str) -> None:
    SEEN["unbooked"] = (result, current_task().task)


@task(registry=reg)
def pay(booking: str) -> None:
    raise RuntimeError("card declined")


class RecordingBroker(LocalBroker):
    """The worker's broker; keeps the events it publishes."""

    def __init__(self, hub: Any) -> None:
        super().__init__(hub)
        self.events: list[Event] = []

    def publish(self, messages: Sequence[Outgoing]) -> None:
        for m in messages:
            msg = protocol.decode(m.body)
            if isinstance(msg, Event):
                self.events.append(msg)
        super().publish(messages)

    def results(self) -> list[Event]:
        return [e for e in self.events if e.kind in (protocol.TASK_SUCCEEDED, protocol.TASK_FAILED)]


def rig(
    cfg: Config | None = None,
    async_concurrency: int = 4,
    registry: Registry = reg,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Harness, Worker, RecordingBroker]:
    h = Harness()
    h.tasks.close()  # the worker under test takes the requests
    broker = RecordingBroker(h.hub)
    w = Worker(
        cfg or Config(),
        broker,
        registry,
        concurrency=1,
        name="w1",
        store=h.store,
        heartbeat_thread=False,
        async_concurrency=async_concurrency,
        clock=clock,
    )
    w.start()
    return h, w, broker


def drive(h: Harness, w: Worker, done: Callable[[], bool], what: str) -> None:
    """Step engine and worker until ``done()``; the worker's poll wakes when a task ends."""
    for _ in range(100):
        h.pump()
        if done():
            return
        w.run_once(0.5)
    raise AssertionError(f"never happened: {what}")


def finished(h: Harness, rid: str) -> Callable[[], bool]:
    return lambda: h.client.status(rid).status in ("SUCCESS", "FAILED", "REVERTED", "CANCELLED")


def close(w: Worker) -> None:
    w._pool.shutdown()
    w._aio.stop()


def test_an_async_task_runs_on_the_event_loop_with_its_context() -> None:
    h, w, _ = rig()
    rid = h.client.submit(flow.linear("fetching", fetch).compile(reg), {"x": 4})
    drive(h, w, finished(h, rid), "the run to finish")
    info = h.client.status(rid)
    assert info.status == "SUCCESS" and info.result == {"out": 40}
    assert SEEN["key"] == SEEN["child_key"] == f"{rid}:fetch:1"
    assert SEEN["thread"] == "ackflow-async"  # not a pool thread
    assert (w._inflight, w._async_inflight, w.prefetch) == (0, 0, 1 + 4)
    close(w)


def test_an_async_task_raising_fails_its_attempt_with_the_exception() -> None:
    h, w, _ = rig()
    rid = h.client.submit(flow.linear("breaking", breaks).compile(reg), {})
    drive(h, w, finished(h, rid), "the run to fail")
    info = h.client.status(rid)
    assert info.status == "FAILED" and info.error is not None
    assert info.error["type"] == "ValueError" and info.error["message"] == "bad input"
    assert "in breaks" in info.error["traceback"]
    close(w)


def test_an_async_task_past_its_timeout_is_cancelled_and_fails_with_task_timeout(gate: Gate) -> None:
    """A thread past its timeout runs on (its late result is fenced); a coroutine is cancelled
    at its next await, and its slot is free at once."""
    h, w, broker = rig()
    rid = h.client.submit(flow.linear("hanging", hangs).compile(reg), {})
    h.pump()
    w.run_once(0)
    gate.entered()
    for _ in range(100):  # the worker alone: its own deadline, not the engine's timer
        if not w._async_inflight:
            break
        w.run_once(0.5)
    assert gate.cancelled.is_set(), "the coroutine was not cancelled"
    assert w._async_inflight == 0
    [result] = broker.results()
    assert result.kind == protocol.TASK_FAILED and result.body["error"]["type"] == "TaskTimeout"
    assert result.body["error"]["message"] == "attempt 1 did not finish within 0.2 s"
    assert result.body["error"]["types"] == ["TaskTimeout"]  # as a retry policy's on= sees it
    drive(h, w, finished(h, rid), "the run to fail")
    info = h.client.status(rid)
    assert info.status == "FAILED" and info.error is not None and info.error["type"] == "TaskTimeout"
    close(w)


def test_cancelling_the_run_cancels_a_running_async_task(gate: Gate) -> None:
    h, w, broker = rig(Config(ack_after_s=0, lease_s=30))
    rid = h.client.submit(flow.linear("held_run", held).compile(reg), {"name": "a"})
    h.pump()
    w.run_once(0)
    gate.entered()
    w.run_once(0)  # past ack_after_s: leased, so its heartbeats read the run's status
    h.pump()
    h.control(rid, protocol.RUN_CANCEL)
    assert h.client.status(rid).status == "CANCELLED"
    w.beat()  # the heartbeat finds the run cancelled: the coroutine is cancelled
    drive(h, w, lambda: w._async_inflight == 0, "the cancelled task to end")
    assert gate.cancelled.is_set()
    [result] = broker.results()
    assert result.body["error"]["type"] == "TaskCancelled"
    assert "its run was cancelled" in result.body["error"]["message"]
    assert h.client.status(rid).status == "CANCELLED"
    close(w)


def test_progress_of_an_async_task_is_sent_by_the_heartbeats(gate: Gate) -> None:
    now = [0.0]
    h, w, _ = rig(clock=lambda: now[0])
    rid = h.client.submit(flow.linear("progressing", reports_progress).compile(reg), {})
    h.pump()
    w.run_once(0)
    gate.entered()
    now[0] += 1  # running for a second: announced, so the run shows it RUNNING
    w.run_once(0)
    h.pump()
    w.beat()
    assert h.client.status(rid).tasks["reports_progress"].progress == (0.5, "halfway")
    gate.open_one()
    drive(h, w, finished(h, rid), "the run to finish")
    assert h.client.status(rid).result == {"out": "done"}
    close(w)


def test_async_concurrency_bounds_the_async_tasks_running_and_threads_are_not_held_up(
    gate: Gate,
) -> None:
    h, w, _ = rig(async_concurrency=2)
    held_flow = flow.linear("held_flow", held).compile(reg)
    first = [h.client.submit(held_flow, {"name": n}) for n in ("a1", "a2")]
    h.pump()
    w.run_once(0)
    gate.entered(2)
    # both async slots are taken; a threaded task still runs, and later async ones wait
    sync_run = h.client.submit(flow.linear("quick_flow", quick).compile(reg), {})
    later = [h.client.submit(held_flow, {"name": n}) for n in ("a3", "a4")]
    drive(h, w, finished(h, sync_run), "the threaded task to run beside the async ones")
    assert h.client.status(sync_run).status == "SUCCESS"
    w.run_once(0)
    assert (gate.inside, w._async_inflight) == (2, 2)
    assert [req.args["name"] for _, req in w._backlog] == ["a3"]  # the prefetch window: 1 + 2
    runs = first + later

    def ended() -> int:
        return sum(finished(h, r)() for r in runs)

    for n in range(1, 5):
        gate.open_one()  # one ends; a waiting one takes its slot
        drive(h, w, lambda want=n: ended() == want, f"{n} async runs to finish")
        if n <= 2:
            gate.entered()
    assert all(h.client.status(r).status == "SUCCESS" for r in runs)
    assert gate.most_inside == 2
    close(w)


def test_async_revert_handlers_run_when_the_run_fails() -> None:
    h, w, _ = rig()
    rid = h.client.submit(flow.linear("booking", book, pay).compile(reg), {})
    drive(h, w, lambda: "unbooked" in SEEN and finished(h, rid)(), "the booking to be reverted")
    _, tasks = h.status(rid)
    assert SEEN["unbooked"] == ("B-1", "book") and tasks["book"] == "REVERTED"
    close(w)


def test_a_worker_without_async_tasks_starts_no_event_loop() -> None:
    sync_reg = Registry()
    sync_reg.add(reg.get("quick"))
    h, w, _ = rig(registry=sync_reg)
    rid = h.client.submit(flow.linear("quick_only", quick).compile(sync_reg), {})
    drive(h, w, finished(h, rid), "the run to finish")
    assert not w._aio.started and w.prefetch == 1
    close(w)


def test_a_plain_function_returning_a_coroutine_fails_saying_to_use_async_def() -> None:
    own = Registry()

    @task(registry=own)
    def sneaky() -> Any:
        return asyncio.sleep(0)

    req = TaskRequest("r", "run", "sneaky", "sneaky", 1, {}, [])
    result = execute(req, own, "w", 1 << 20)
    assert result.kind == protocol.TASK_FAILED
    assert "define it with async def" in result.body["error"]["message"]


def test_stopping_the_event_loop_cancels_what_still_runs_in_its_context(gate: Gate) -> None:
    """A worker that gives up waiting hands the request back (it stays unacknowledged); the
    coroutine is cancelled on its loop, not closed later by the garbage collector outside
    its context (which raised there)."""
    h, w, broker = rig()
    h.client.submit(flow.linear("held_alone", held).compile(reg), {"name": "x"})
    h.pump()
    w.run_once(0)
    gate.entered()
    w._aio.stop()
    assert gate.cancelled.is_set() and not w._aio.started
    assert broker.results() == [] and len(broker._unacked) == 1
    w._pool.shutdown()


def _attempt(fn_name: str, registry: Registry, timeout_s: float = 0.0) -> Event:
    req = TaskRequest("r", "run", fn_name, fn_name, 1, {}, [], timeout_s=timeout_s)
    ctx = TaskContext("run", fn_name, 1, token_maker=lambda: "af1.a.b.c")
    return asyncio.run(execute_async(req, registry.get(fn_name), "w", 1 << 20, ctx))


def test_a_timeout_error_the_task_raises_itself_is_not_its_time_limit() -> None:
    own = Registry()

    @task(registry=own, timeout=30)
    async def asks_upstream() -> None:
        await asyncio.wait_for(asyncio.get_running_loop().create_future(), 0.01)

    error = _attempt("asks_upstream", own, timeout_s=30).body["error"]
    assert error["type"] == "TimeoutError" and "TaskTimeout" not in error["types"]


def test_an_async_task_can_defer_to_an_outside_system() -> None:
    own = Registry()

    @task(registry=own, provides="answer")
    async def asks_a_human() -> Any:
        await asyncio.sleep(0)
        return defer(note="asked")

    result = _attempt("asks_a_human", own)
    assert result.kind == protocol.TASK_WAITING and result.body["note"] == "asked"


def test_a_request_carries_its_attempts_timeout_and_a_revert_request_none() -> None:
    """The worker cancels an async task at the limit of its flow node (a bind may override
    the task's own); a revert handler has no time limit."""
    h = Harness()
    rid = h.client.submit(flow.linear("timed_booking", book.bind(timeout=7), pay).compile(reg), {})
    h.pump()
    booking = h.one()
    assert booking.timeout_s == 7.0
    h.ok(booking, booking="B-1")
    paying = h.one()
    assert paying.timeout_s == 0.0
    h.fail(paying, "RuntimeError")
    undo = h.one()
    assert (undo.task, undo.mode, undo.timeout_s) == ("book", protocol.MODE_REVERT, 0.0)
    assert h.client.status(rid).status == "REVERTING"
