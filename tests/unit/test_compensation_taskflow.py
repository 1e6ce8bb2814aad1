"""Compensation as TaskFlow defines it (issue 16, item 2), rule by rule:

- the task whose body failed for good also has its revert handler called, with the failure
  instead of a result — for a handler that takes ``failure`` (handlers written before, which
  cannot tell a failure from a result, are called as they always were: for successes only);
- a reverted task's results leave the run's data;
- a map node takes a revert handler, called per element that succeeded (last element first);
- the order holds: a predecessor is reverted only once every active successor finished and
  was reverted — including a map node's elements still running after the node failed.

Driven event by event on the in-memory store and transport (`Harness`).
"""

from __future__ import annotations

from typing import Any

import pytest

from runner import Failure, Retry, flow, protocol, states, task
from runner.define.spec import FlowSpec, TaskSpec
from runner.define.tasks import Registry
from runner.protocol import TaskRequest
from runner.store import keys
from tests.helpers.harness import Harness
from workers.execute import execute

reg = Registry()
CALLS: list[tuple[str, dict[str, Any]]] = []


@task(provides="s", registry=reg)
def src() -> int:
    return 1


@src.revert
def src_undo(result: int) -> None:
    CALLS.append(("src_undo", {"result": result}))


@task(provides="b_out", registry=reg)
def breaks(s: int) -> int:
    raise ValueError("breaks")


@breaks.revert
def breaks_undo(s: int, result: Any, failure: Failure | None) -> None:
    CALLS.append(("breaks_undo", {"s": s, "result": result, "failure": failure}))


@task(provides="o_out", registry=reg)
def old_style(s: int) -> int:
    raise ValueError("old")


@old_style.revert
def old_style_undo(result: Any) -> None:  # written before: no failure parameter
    CALLS.append(("old_style_undo", {"result": result}))


@task(provides="k_out", registry=reg)
def kw_style(s: int) -> int:
    return 5


@kw_style.revert
def kw_style_undo(**kw: Any) -> None:
    CALLS.append(("kw_style_undo", dict(kw)))


@task(provides="ids", registry=reg)
def ids(s: int) -> list[int]:
    return [1, 2, 3]


@ids.revert
def ids_undo() -> None:
    return None


@task(provides="sq", registry=reg)
def sq(n: int) -> int:
    return n * n


@sq.revert
def sq_undo(n: int, result: int | None, failure: Failure | None = None) -> None:
    return None


@task(provides="late", registry=reg)
def late(s: int) -> int:
    raise ValueError("late")


FAILS = flow.linear("fails", src, breaks).compile(reg)
OLD = flow.linear("old", src, old_style).compile(reg)
MAPPED = flow.graph("mapped", src, ids, flow.map(sq, over="ids", provides="sqs", limit=2), late).compile(reg)
MAP_THEN_FAIL = flow.linear("map_then_fail", src, ids, flow.map(sq, over="ids", provides="sqs"), late)
MAP_THEN_FAIL_SPEC = MAP_THEN_FAIL.compile(reg)


def reverted(h: Harness, rid: str) -> list[str]:
    return [e.scope for e in h.client.history(rid) if e.new == states.REVERTED and e.scope != "run"]


def data(h: Harness, rid: str) -> set[str]:
    return set(h.store.read_all(rid, keys.DATA))


def run_handler(req: TaskRequest) -> protocol.Event:
    """What a worker does with ``req``: call the registered handler, report its outcome."""
    return execute(req, reg, "w", 1 << 20)


# --- (a) the failed task's own handler -------------------------------------------------


def test_the_failed_task_is_reverted_with_its_failure_then_its_predecessor() -> None:
    h = Harness()
    rid = h.client.submit(FAILS, {})
    h.pump()
    h.ok(h.one(), s=1)
    h.fail(h.one())  # breaks fails for good (no retry policy)
    [undo] = h.requests()  # the bug: none, src_undo came first and breaks' effects stayed
    assert (undo.task, undo.mode, undo.result) == ("breaks", protocol.MODE_REVERT, None)
    assert undo.failure is not None and undo.failure["type"] == "ValueError"
    assert undo.failure["attempt"] == 1 and undo.args == {"s": 1}
    h.reverted(undo)
    [undo_src] = h.requests()
    assert (undo_src.task, undo_src.result, undo_src.failure) == ("src", 1, None)
    h.reverted(undo_src)
    assert h.status(rid) == (states.REVERTED, {"src": states.REVERTED, "breaks": states.REVERTED})
    assert reverted(h, rid) == ["breaks", "src"]
    notes = [
        e.extra.get("note") for e in h.client.history(rid) if e.scope == "breaks" and e.new == "REVERTING"
    ]
    assert notes == ["reverting its failure"]
    info = h.client.status(rid)
    assert info.tasks["breaks"].error is not None  # what failed stays visible
    assert info.error is not None and info.error["task"] == "breaks"


def test_a_failure_is_reverted_once_when_the_retries_are_exhausted_not_between_attempts() -> None:
    h = Harness()
    rid = h.client.submit(
        flow.linear("tries", src, breaks.bind(retry=Retry(attempts=2, delay=0))).compile(reg), {}
    )
    h.pump()
    h.ok(h.one(), s=1)
    h.fail(h.one())
    again = h.one()  # the retry, and no revert request: the task has not failed for good
    assert (again.task, again.mode, again.attempt) == ("breaks", protocol.MODE_RUN, 2)
    assert h.status(rid)[0] == states.RUNNING
    h.fail(again)
    [undo] = h.requests()
    assert (undo.task, undo.mode, undo.attempt) == ("breaks", protocol.MODE_REVERT, 2)
    assert undo.failure is not None and undo.failure["attempt"] == 2


def test_a_handler_without_a_failure_parameter_is_not_called_for_its_own_failure() -> None:
    h = Harness()
    rid = h.client.submit(OLD, {})
    h.pump()
    h.ok(h.one(), s=1)
    h.fail(h.one())
    [undo_src] = h.requests()  # old_style's handler cannot tell a failure: it is left alone
    assert undo_src.task == "src"
    h.reverted(undo_src)
    assert h.status(rid) == (states.REVERTED, {"src": states.REVERTED, "old_style": states.FAILED})


def test_the_spec_says_which_handlers_take_the_failure() -> None:
    assert FAILS.tasks["breaks"].revert_failure and not FAILS.tasks["src"].revert_failure
    assert not OLD.tasks["old_style"].revert_failure
    again = FlowSpec.from_data(protocol.unpack(protocol.pack(FAILS.to_data())))
    assert again.tasks["breaks"].revert_failure
    old = {k: v for k, v in FAILS.tasks["breaks"].to_data().items() if k != "revert_failure"}
    assert not TaskSpec.from_data(old).revert_failure  # a spec stored by an older release
    assert "revert_failure" not in FAILS.tasks["src"].to_data()  # unchanged for the others


def test_the_worker_passes_a_failure_only_to_handlers_that_name_it() -> None:
    base = TaskRequest("r", "run", "t", "", 2, {"s": 1}, [], mode=protocol.MODE_REVERT)
    err = {
        "type": "ValueError",
        "message": "breaks",
        "traceback": "tb",
        "types": ["ValueError"],
        "attempt": 2,
    }
    CALLS.clear()
    for fn, result in (("breaks.revert", None), ("old_style.revert", None), ("kw_style.revert", 5)):
        failure = err if fn != "kw_style.revert" else None
        ev = run_handler(TaskRequest(**{**base.__dict__, "fn": fn, "result": result, "failure": failure}))
        assert ev.kind == protocol.TASK_REVERTED, ev.body
    ev = run_handler(TaskRequest(**{**base.__dict__, "fn": "src.revert", "result": 1}))
    assert ev.kind == protocol.TASK_REVERTED
    got = dict(CALLS)
    f = got["breaks_undo"]["failure"]
    assert isinstance(f, Failure) and (f.type, f.message, f.attempt) == ("ValueError", "breaks", 2)
    assert f.check(KeyError.__name__, "ValueError") == "ValueError" and f.check("KeyError") is None
    assert got["breaks_undo"]["result"] is None and got["breaks_undo"]["s"] == 1
    assert got["old_style_undo"] == {"result": None}
    assert got["kw_style_undo"] == {"s": 1, "result": 5}  # **kwargs written before: as always
    assert got["src_undo"] == {"result": 1}


def test_a_failure_survives_the_wire() -> None:
    req = TaskRequest(
        "r", "run", "t", "t.revert", 1, {}, [], mode=protocol.MODE_REVERT, failure={"type": "X"}
    )
    back = protocol.decode(protocol.encode(req))
    assert isinstance(back, TaskRequest) and back.failure == {"type": "X"}
    plain = protocol.decode(protocol.encode(TaskRequest("r", "run", "t", "t", 1, {}, [])))
    assert isinstance(plain, TaskRequest) and plain.failure is None


# --- (b) reverted results leave the run's data -----------------------------------------


def test_the_results_of_reverted_tasks_are_cleared_from_the_run_data() -> None:
    h = Harness()
    fl = flow.linear("kept", src, kw_style, old_style).compile(reg)
    rid = h.client.submit(fl, {})
    h.pump()
    h.ok(h.one(), s=1)
    h.ok(h.one(), k_out=5)
    h.fail(h.one())
    assert data(h, rid) == {"s", "k_out"}
    [undo_kw] = h.requests()
    h.reverted(undo_kw)
    assert data(h, rid) == {"s"}  # the bug: k_out stayed, shown as if current
    [undo_src] = h.requests()
    assert undo_src.result == 1  # a predecessor's own result is still there for its handler
    h.reverted(undo_src)
    assert data(h, rid) == set()
    assert h.status(rid)[0] == states.REVERTED


# --- (c) map nodes take a revert handler, called per element ------------------------------


def test_a_map_handler_is_called_for_each_element_that_succeeded_last_first() -> None:
    h = Harness()
    rid = h.client.submit(MAP_THEN_FAIL_SPEC, {})
    assert MAP_THEN_FAIL_SPEC.tasks["sq"].revert == "sq.revert"  # the bug: "" for a map node
    h.pump()
    h.ok(h.one(), s=1)
    h.ok(h.one(), ids=[1, 2, 3])
    for r in h.requests():
        h.ok(r, **{r.task: r.args["n"] ** 2})
    h.fail(h.one())  # late fails: the map's three elements are reverted, then ids (no-op), src
    order = []
    while reqs := h.requests():
        [r] = reqs  # one at a time
        order.append((r.task, r.args.get("n"), r.result))
        h.reverted(r)
    assert order == [
        ("sq[2]", 3, 9),
        ("sq[1]", 2, 4),
        ("sq[0]", 1, 1),
        ("ids", None, [1, 2, 3]),
        ("src", None, 1),
    ]
    status, tasks = h.status(rid)
    assert status == states.REVERTED and tasks["sq"] == states.REVERTED
    assert reverted(h, rid) == ["sq[2]", "sq[1]", "sq[0]", "sq", "ids", "src"]
    assert not {"sqs", "sq[0]", "sq[1]", "sq[2]"} & data(h, rid)


def test_a_map_stopped_by_a_failure_reverts_what_its_elements_did_after_they_finish() -> None:
    h = Harness()
    rid = h.client.submit(MAPPED, {})
    h.pump()
    h.ok(h.one(), s=1)
    reqs = h.by_task()
    h.ok(reqs["ids"], ids=[1, 2, 3])
    first, second = h.requests()  # limit 2: the third never starts
    h.fail(reqs["late"])
    assert h.requests() == []  # the elements still run: nothing is reverted under them
    h.ok(first, **{first.task: 1})
    assert h.requests() == []
    h.fail(second)  # its failure fails the node; sq_undo takes failure: it is owed a call too
    [u1] = h.requests()
    assert (u1.task, u1.result, u1.failure is not None) == ("sq[1]", None, True)
    h.reverted(u1)
    [u0] = h.requests()
    assert (u0.task, u0.result, u0.failure) == ("sq[0]", 1, None)
    h.reverted(u0)
    [u_ids] = h.requests()
    assert u_ids.task == "ids"
    h.reverted(u_ids)
    h.reverted(h.one())  # src
    status, tasks = h.status(rid)
    assert (status, tasks["sq"]) == (states.REVERTED, states.REVERTED)


def test_a_failed_map_nodes_running_element_is_waited_for_before_its_predecessor() -> None:
    """The node FAILED (an element gave up) while another element still ran: ``ids``, whose
    output that element reads, is reverted only after it ended and was reverted."""
    h = Harness()
    rid = h.client.submit(MAPPED, {})
    h.pump()
    h.ok(h.one(), s=1)
    reqs = h.by_task()
    h.ok(reqs["ids"], ids=[1, 2, 3])
    first, second = h.requests()
    h.fail(first)  # the node fails with it, and the run; late still runs too
    h.fail(reqs["late"])
    assert h.requests() == []  # the bug: ids reverted while sq[1] still ran on its output
    assert h.status(rid)[1]["sq"] == states.FAILED
    h.ok(second, **{second.task: 4})
    [u1] = h.requests()  # the node's elements, last first: the one that succeeded late
    assert (u1.task, u1.result) == ("sq[1]", 4)
    h.reverted(u1)
    [u0] = h.requests()  # the failed one, with its failure
    assert (u0.task, u0.failure is not None) == ("sq[0]", True)
    h.reverted(u0)
    assert h.one().task == "ids"


def test_a_failing_element_revert_fails_the_run_naming_the_element() -> None:
    h = Harness()
    rid = h.client.submit(MAP_THEN_FAIL_SPEC, {})
    h.pump()
    h.ok(h.one(), s=1)
    h.ok(h.one(), ids=[1, 2])
    for r in h.requests():
        h.ok(r, **{r.task: 0})
    h.fail(h.one())
    undo = h.one()
    err = {"type": "OSError", "message": "gone", "traceback": "", "types": ["OSError"]}
    rid_ev = protocol.revert_result_id(undo.run_id, undo.task, undo.attempt)
    h.send(h.event(protocol.TASK_REVERT_FAILED, undo, rid_ev, error=err))
    h.pump()
    info = h.client.status(rid)
    assert info.status == states.FAILED and info.error is not None
    assert info.error["type"] == "RevertFailed" and info.error["task"] == "sq[1]"
    assert info.tasks["sq"].status == states.FAILED and info.tasks["sq"].revert_error is not None
    assert h.requests() == []


@task(provides="sq_plain", registry=reg)
def sq_plain(n: int) -> int:
    return n * n


@pytest.mark.parametrize("ends", ["succeeds", "fails"])
def test_a_predecessor_waits_for_the_running_elements_of_a_failed_map_node(ends: str) -> None:
    """Without a map handler too: ``ids`` is reverted only after the element that still ran
    on its output when the node failed has ended — its end, success or failure, is what lets
    compensation go on."""
    h = Harness()
    fl = flow.graph("plainmap", src, ids, flow.map(sq_plain, over="ids", provides="sqs", limit=2)).compile(
        reg
    )
    rid = h.client.submit(fl, {})
    h.pump()
    h.ok(h.one(), s=1)
    h.ok(h.one(), ids=[1, 2, 3])
    first, second = h.requests()
    h.fail(first)  # the node fails, and the run with it
    assert h.requests() == []  # the bug: ids_undo sent while sq_plain[1] still ran
    if ends == "succeeds":
        h.ok(second, **{second.task: 4})
    else:
        h.fail(second)  # the bug: the run then stayed REVERTING, ids never reverted
    assert h.one().task == "ids"
    assert h.status(rid)[0] == states.REVERTING
