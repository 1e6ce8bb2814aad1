"""A cancel skips every task not yet running — the elements of a running map too — and a
task of a cancelled run whose worker died is settled by the request's next worker.

Found by the simulator (tests/sim, control events): a run cancelled while a map node had
elements scheduled left them SCHEDULED (the cancel skipped only the flow's own tasks, not a
map's elements), so their ``started`` events made them RUNNING after the cancel; and a task
RUNNING when its run was cancelled, whose worker then died, stayed RUNNING for ever (the
next worker skipped the redelivered request without telling the engine).
"""

from __future__ import annotations

from runner import flow, task
from runner.decide.records import TaskState
from runner.define.tasks import Registry
from runner.protocol import TaskRequest
from runner.store import keys
from tests.helpers.harness import Harness
from workers.skip import skip_reason

reg = Registry()


@task(provides="ids", registry=reg)
def ids() -> list[int]:
    return [1, 2, 3, 4]


@task(provides="sq", registry=reg)
def sq(n: int) -> int:
    return n * n


FLOW = flow.linear("cmap", ids, flow.map(sq, over="ids", provides="sqs", limit=2)).compile(reg)


def _element_states(h: Harness, rid: str) -> dict[str, str]:
    raw = h.store.read_all(rid, keys.TASKS)
    return {n: TaskState.decode(v).status for n, v in sorted(raw.items()) if "[" in n}


def test_a_cancel_skips_the_scheduled_elements_of_a_running_map() -> None:
    h = Harness()
    rid = h.client.submit(FLOW, {})
    h.pump()
    h.ok(h.one(), ids=[1, 2, 3, 4])
    first, second = h.requests()  # two elements scheduled (the limit)
    h.send(h.event("task.started", first, f"started:{rid}:{first.task}:1", worker="w"))
    h.pump()
    h.control(rid, "run.cancel")
    assert h.status(rid)[0] == "CANCELLED"
    elements = _element_states(h, rid)
    assert elements[second.task] == "SKIPPED"  # scheduled, not started: skipped
    assert elements[first.task] == "RUNNING"  # running: it finishes
    h.send(h.event("task.started", second, f"started:{rid}:{second.task}:1", worker="w"))
    h.pump()
    assert _element_states(h, rid)[second.task] == "SKIPPED"  # its late start changes nothing
    h.ok(first, **{first.task: 1})
    assert h.requests() == []  # nothing more starts
    assert h.dead_letters() == []


def test_the_redelivered_request_of_a_running_task_of_a_cancelled_run_is_reported() -> None:
    req = TaskRequest("req:r:t:2", "r", "t", "fn", 2, {}, ["x"], False, 1)
    running = TaskState(status="RUNNING", attempt=2).encode()
    reason, report = skip_reason(req, 1, b"CANCELLED", running)
    assert reason and report  # the engine must learn the attempt ended without effect
    # a request the cancel already settled (skipped), or of another attempt: nothing to report
    assert skip_reason(req, 1, b"CANCELLED", TaskState(status="SKIPPED", attempt=2).encode())[1] is False
    assert skip_reason(req, 1, b"CANCELLED", TaskState(status="RUNNING", attempt=3).encode())[1] is False
    assert skip_reason(req, 0, b"CANCELLED", None) == ("the run was cancelled", False)


def test_a_task_left_running_by_a_cancel_ends_when_its_redelivery_is_skipped() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("one", sq).compile(reg), {"n": 2})
    h.pump()
    req = h.one()
    h.send(h.event("task.started", req, f"started:{rid}:sq:1", worker="w"))
    h.pump()
    h.control(rid, "run.cancel")
    assert h.status(rid) == ("CANCELLED", {"sq": "RUNNING"})
    # its worker died; the next one skips the redelivery and reports it not started
    from workers.execute import not_started

    h.send(not_started(req, "w2", "the run was cancelled"))
    h.pump()
    assert h.status(rid) == ("CANCELLED", {"sq": "FAILED"})
    assert h.dead_letters() == []


@task(provides="cm_amount")
def cm_quote(x: int) -> int:
    return x


@task(provides="cm_ok")
def cm_approve(cm_amount: int) -> str:
    return "ok"


def test_a_not_taken_edge_after_a_cancel_skips_nothing_twice() -> None:
    """Found by the simulator (seed 40104): the run is cancelled (its successor SKIPPED) while
    a task runs; the task's success then finds its conditional edge not taken and tried to
    skip the successor again — an IllegalTransition that dead-lettered the result."""
    from runner import protocol
    from runner.define.conditions import when

    h = Harness()
    f = flow.graph(
        "cm_cond", cm_quote, cm_approve, edges=[("cm_quote", "cm_approve", when("cm_amount", ">", 100))]
    )
    rid = h.client.submit(f, {"x": 5})
    h.pump()
    req = h.one()
    h.send(h.event(protocol.TASK_STARTED, req, f"started:{rid}:cm_quote:1:1"))
    h.pump()
    h.control(rid, protocol.RUN_CANCEL)  # the running task is told; its result still counts
    h.ok(req, cm_amount=5)
    assert h.dead_letters() == []
    assert h.status(rid) == ("CANCELLED", {"cm_quote": "SUCCESS", "cm_approve": "SKIPPED"})
