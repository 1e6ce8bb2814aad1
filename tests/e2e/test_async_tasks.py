"""``async def`` tasks end to end (issue 16, item 4), on real RabbitMQ + Redis (engine and
worker processes started through the CLI, the worker with ``--async-concurrency``) and in
local mode (one process), with the same assertions: results and `current_task()` in
coroutines, a timeout that cancels the coroutine, a cancelled run that cancels it, progress,
and async revert handlers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from runner.client import Client, RunInfo
from runner.config import Config
from runner.errors import RunNotFound
from runner.local import LocalRuntime
from tests.helpers import async_flows as af
from tests.helpers.processes import Processes, until_run
from tests.helpers.semantic_flows import recorded

pytestmark = pytest.mark.services

# Long tasks take a lease at once and renew it every 1/3 s: heartbeats (progress, cancel)
# are quick to observe.
FAST_LEASES = {"ACKFLOW_ACK_AFTER_S": "0", "ACKFLOW_LEASE_S": "1"}


class Env:
    def __init__(self, mode: str, client: Client, procs: Processes | None = None) -> None:
        self.mode, self.client, self.procs = mode, client, procs

    def wait(self, run_id: str, timeout_s: float = 60) -> RunInfo:
        if self.procs is not None:
            return self.procs.wait(self.client, run_id, timeout_s)  # type: ignore[no-any-return]
        return self.client.wait(run_id, timeout_s)

    def until(self, run_id: str, check: Callable[[], bool], what: str) -> None:
        until_run(self.client, run_id, check, what, self.procs)

    def progress(self, run_id: str, task: str) -> object:
        try:
            t = self.client.status(run_id).tasks.get(task)
        except RunNotFound:
            return None
        return None if t is None else t.progress


@pytest.fixture(params=["distributed", "local"])
def env(request: pytest.FixtureRequest, config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)  # the tasks' logs
    if request.param == "local":
        with LocalRuntime(config.with_(ack_after_s=0, lease_s=1)) as rt:
            yield Env("local", rt.client)
        return
    procs: Processes = request.getfixturevalue("procs")
    procs.engine(env=FAST_LEASES)
    worker = procs.start(
        "worker", "tests.helpers.async_flows", "-c", "1", "--async-concurrency", "4", env=FAST_LEASES
    )
    procs.until_logged(worker, "concurrency 1 (+4 async)")  # the option reached the worker
    yield Env("distributed", request.getfixturevalue("client"), procs)


def key(name: str) -> str:
    return f"ackflow-test:{name}:{uuid.uuid4().hex}"


def test_async_and_threaded_tasks_pass_values_along(env: Env) -> None:
    rid = env.client.submit(af.fetch_flow, {"x": 5})
    info = env.wait(rid)
    assert info.status == "SUCCESS", info.error
    assert info.result == {"total": 5 + 0 + 1 + 2}
    page = env.client.status(rid)
    assert page.tasks["async_fetch"].status == "SUCCESS"


def test_an_async_task_past_its_timeout_is_cancelled_and_retried(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(af.timeout_flow, {"log": log})
    info = env.wait(rid)
    assert info.status == "SUCCESS" and info.result == {"fresh": "fresh-2"}
    failed = [e for e in env.client.history(rid) if e.scope == "async_slow" and e.new == "FAILED"]
    assert [(e.attempt, e.extra["error_type"]) for e in failed] == [(1, "TaskTimeout")]
    # the coroutine itself was cancelled: it does not run on, as a thread would
    env.until(rid, lambda: recorded(log) == ["cancelled:1"], "attempt 1's coroutine to be cancelled")


def test_cancelling_the_run_cancels_the_running_coroutine(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(af.cancel_flow, {"log": log})
    env.until(
        rid, lambda: env.progress(rid, "async_until_cancelled") == (0.25, "waiting"), "the task's progress"
    )
    assert env.client.cancel(rid, "not needed") == "CANCELLED"
    env.until(rid, lambda: recorded(log) == ["cancelled"], "the coroutine to be cancelled")
    assert env.client.status(rid).status == "CANCELLED"


def test_async_revert_handlers_undo_an_async_task_when_the_run_fails(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(af.revert_flow, {"item": "car", "log": log})
    info = env.wait(rid)
    assert info.status in ("FAILED", "REVERTED")
    assert info.error is not None and info.error["type"] == "PermissionError"
    assert recorded(log) == ["hold:car", "release:H-car:async_hold"]
    assert info.tasks["async_hold"].status == "REVERTED"
