"""Local (embedded) mode runs the same flows as the distributed tests, in one process."""

from __future__ import annotations

import pytest

from runner import flow, task
from runner.errors import MissingInputError, PayloadTooLargeError
from runner.local import LocalRuntime
from tests.helpers import flows

CASES = [
    (flows.chain10, {"v0": 0}, {"v10": 10}),
    (flows.diamond_flow, {"x": 1}, {"d": [5, 10, 15]}),
    (flows.fanout100, {"n": 2}, {"total": 200_000}),
    (flows.nested_flow, {"x": 5}, {"total": 13}),
]


@pytest.fixture(scope="module")
def rt():
    with LocalRuntime(concurrency=4) as runtime:
        yield runtime


@pytest.mark.parametrize("flow,inputs,result", CASES, ids=[c[0].name for c in CASES])
def test_flows_succeed_with_their_result(rt: LocalRuntime, flow, inputs, result) -> None:
    info = rt.run(flow, inputs, timeout_s=60)
    assert info.status == "SUCCESS"
    assert info.result == result
    assert all(t.status == "SUCCESS" for t in info.tasks.values())


def test_failing_task(rt: LocalRuntime) -> None:
    info = rt.run(flows.failing_flow, {"x": 1}, timeout_s=60)
    assert info.status == "FAILED"
    assert info.error is not None
    assert (info.error["task"], info.error["type"], info.error["message"]) == (
        "explode",
        "ValueError",
        "boom 2",
    )
    assert "raise ValueError" in info.error["traceback"]
    assert info.tasks["after"].status == "PENDING"


def test_fifty_concurrent_runs(rt: LocalRuntime) -> None:
    ids = [rt.client.submit(flows.chain10, {"v0": i}) for i in range(50)]
    results = [rt.client.wait(r, 120) for r in ids]
    assert [r.result for r in results] == [{"v10": i + 10} for i in range(50)]


def test_resubmitting_a_run_id_is_idempotent(rt: LocalRuntime) -> None:
    a = rt.client.submit(flows.chain(2), {"v0": 1}, run_id="same-id")
    b = rt.client.submit(flows.chain(2), {"v0": 1}, run_id="same-id")
    assert a == b == "same-id"
    assert rt.client.wait("same-id", 60).result == {"v2": 3}
    assert sum(1 for h in rt.client.history("same-id") if h.scope == "run" and h.new == "RUNNING") == 1


def test_run_id_reused_with_other_inputs_is_refused(rt: LocalRuntime) -> None:
    from runner.errors import RunConflictError

    rt.client.submit(flows.chain(2), {"v0": 1}, run_id="conflict-id")
    with pytest.raises(RunConflictError):
        rt.client.submit(flows.chain(2), {"v0": 2}, run_id="conflict-id")


@task(provides="echoed")
def local_echo(text: str) -> str:
    return text


def test_validation_before_enqueue(rt: LocalRuntime) -> None:
    with pytest.raises(MissingInputError):
        rt.client.submit(flows.chain10, {})
    with pytest.raises(PayloadTooLargeError, match="over the limit"):
        rt.client.submit(flow.linear("echo", local_echo), {"text": "x" * (rt.config.max_payload_bytes + 1)})


def test_oversized_result_fails_the_task_clearly(rt: LocalRuntime) -> None:
    info = rt.run(flows.big, {"size": rt.config.max_payload_bytes + 10}, timeout_s=60)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "PayloadTooLargeError"
