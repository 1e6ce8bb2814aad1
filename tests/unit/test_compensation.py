"""Compensation order: a task is reverted only after every successor that ran has settled.

Driven event by event on the in-memory store and transport, with the worker's own rule for
which requests it skips (`workers.skip.skip_reason`), so every interleaving is exact.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import flow, protocol, states, task
from runner.define.tasks import Registry
from runner.protocol import TaskRequest
from runner.store import keys
from tests.helpers.harness import Harness
from workers.execute import not_started
from workers.skip import skip_reason

reg = Registry()


@task(registry=reg)
def node(**kw: Any) -> None:
    return None


@node.revert
def node_undo(**kw: Any) -> None:
    return None


@task(name="fnode", registry=reg)
def fnode(**kw: Any) -> None:
    return None


@fnode.revert
def fnode_undo(failure: Any = None, **kw: Any) -> None:  # also called for its own failure
    return None


@task(provides="s", registry=reg)
def src() -> int:
    return 1


@src.revert
def src_undo() -> None:
    return None


@task(provides="left_out", registry=reg)
def left(s: int) -> int:
    raise ValueError("left breaks")


@left.revert
def left_undo() -> None:
    return None


@task(provides="right_out", registry=reg)
def right(s: int) -> int:
    return 2


@right.revert
def right_undo() -> None:
    return None


@task(provides="joined", registry=reg)
def join(left_out: int, right_out: int) -> int:
    return 3


@join.revert
def join_undo() -> None:
    return None


@task(provides="ok_out", registry=reg)
def q_ok() -> int:
    return 1


@task(provides="bad_out", registry=reg)
def q_bad() -> int:
    raise ValueError("bad")


DIAMOND = flow.graph("diamond", src, left, right, join).compile(reg)


@task(provides="ids", registry=reg)
def mk() -> list[int]:
    return [1, 2, 3]


@task(provides="sq", registry=reg)
def sq(n: int) -> int:
    return n * n


@task(provides="zc", registry=reg)
def other() -> int:
    return 2


def reverted_order(h: Harness, run_id: str) -> list[str]:
    return [e.scope for e in h.client.history(run_id) if e.new == states.REVERTED and e.scope != "run"]


def deliver(h: Harness, req: TaskRequest) -> tuple[str, bool]:
    """What a worker taking ``req`` now decides: (why it skips, whether it reports that)."""
    got = h.store.read(req.run_id, {keys.META: ["status"], keys.TASKS: [req.task]})
    return skip_reason(req, 0, got[keys.META][0], got[keys.TASKS][0])


def test_a_running_successor_is_waited_for_then_reverted_before_its_predecessor() -> None:
    h = Harness()
    rid = h.client.submit(DIAMOND, {})
    h.pump()
    h.ok(h.by_task()["src"], s=1)
    reqs = h.by_task()
    h.fail(reqs["left"])
    assert h.requests() == []  # right still runs: src must not be reverted under it
    assert h.status(rid) == (
        "REVERTING",
        {"join": "PENDING", "left": "FAILED", "right": "SCHEDULED", "src": "SUCCESS"},
    )
    h.ok(reqs["right"], right_out=2)
    [undo_right] = h.requests()
    assert (undo_right.task, undo_right.mode) == ("right", protocol.MODE_REVERT)
    h.reverted(undo_right)
    [undo_src] = h.requests()
    assert undo_src.task == "src"
    h.reverted(undo_src)
    assert reverted_order(h, rid) == ["right", "src"]
    assert h.status(rid)[0] == "REVERTED"


def test_a_queued_successor_is_skipped_by_its_worker_and_then_its_predecessor_reverted() -> None:
    h = Harness()
    rid = h.client.submit(DIAMOND, {})
    h.pump()
    h.ok(h.by_task()["src"], s=1)
    reqs = h.by_task()
    h.fail(reqs["left"])
    reason, report = deliver(h, reqs["right"])  # right's request reaches a worker only now
    assert report and "REVERTING" in reason
    h.send(not_started(reqs["right"], "w", reason))
    h.pump()
    [undo_src] = h.requests()
    assert undo_src.task == "src"
    h.reverted(undo_src)
    assert h.status(rid) == (
        "REVERTED",
        {"join": "PENDING", "left": "FAILED", "right": "SKIPPED", "src": "REVERTED"},
    )
    notes = [e.extra.get("note", "") for e in h.client.history(rid) if e.scope == "right"]
    assert any("not started" in n for n in notes)


def test_a_request_of_a_failed_run_is_skipped_and_run_again_by_a_retry() -> None:
    h = Harness()
    fl = flow.unordered("plain", q_ok, q_bad).compile(reg)
    rid = h.client.submit(fl, {})
    h.pump()
    reqs = h.by_task()
    h.fail(reqs["q_bad"])
    assert h.status(rid)[0] == "FAILED"
    reason, report = deliver(h, reqs["q_ok"])
    assert report and "FAILED" in reason
    h.send(not_started(reqs["q_ok"], "w", reason))
    h.pump()
    status, tasks = h.status(rid)
    assert (status, tasks["q_ok"]) == ("FAILED", "FAILED")
    h.control(rid, protocol.RUN_RETRY)  # a retry runs the skipped task again
    again = h.by_task()
    assert sorted(again) == ["q_bad", "q_ok"] and again["q_ok"].attempt == 2


def descendants(n: int, edges: list[tuple[int, int]]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {i: set() for i in range(n)}
    for i in reversed(range(n)):
        for a, b in edges:
            if a == i:
                out[i] |= {b} | out[b]
    return out


@st.composite
def dags(draw: Any) -> tuple[int, list[tuple[int, int]], int]:
    n = draw(st.integers(2, 7))
    edges = [(i, j) for i in range(n) for j in range(i + 1, n) if draw(st.booleans())]
    return n, edges, draw(st.integers(0, n - 1))


@pytest.mark.fuzz
@given(dag=dags(), data=st.data(), own_failure=st.booleans())
def test_compensation_never_reverts_a_task_before_a_successor_that_ran(
    dag: tuple[int, list[tuple[int, int]], int], data: st.DataObject, own_failure: bool
) -> None:
    """Any small DAG, every task revertable, one task fails, workers take requests and finish
    bodies in any order: no body starts once the run is failing, every success is reverted
    exactly once, each only after all of its (transitive) successors that ran have settled
    (and were reverted, if they succeeded), and the run ends REVERTED. With handlers that take
    ``failure`` (``own_failure``), the failed task is reverted too, once, under the same order."""
    n, edges, failing = dag
    names = [f"t{i}" for i in range(n)]
    fl = flow.graph(
        "dag",
        *((fnode if own_failure else node).bind(x) for x in names),
        edges=[(names[a], names[b]) for a, b in edges],
    ).compile(reg)
    h = Harness()
    rid = h.client.submit(fl, {})
    h.pump()
    queued: list[TaskRequest] = []
    running: list[TaskRequest] = []
    ran: set[str] = set()
    succeeded: set[str] = set()
    failed: set[str] = set()
    undone: Counter[str] = Counter()
    while True:
        queued += h.requests()
        if not (queued or running):
            break
        i = data.draw(st.integers(0, len(queued) + len(running) - 1))
        if i >= len(queued):  # a body finishes
            req = running.pop(i - len(queued))
            if req.task == names[failing]:
                h.fail(req)
                failed.add(req.task)
            else:
                h.ok(req)
                succeeded.add(req.task)
            continue
        req = queued.pop(i)  # a worker takes a request
        reason, report = deliver(h, req)
        if req.mode == protocol.MODE_REVERT:
            assert not reason, reason
            undone[req.task] += 1
            h.reverted(req)
        elif reason:
            if report:
                h.send(not_started(req, "w", reason))
                h.pump()
        else:
            assert h.client.status(rid).status == "RUNNING"  # a body starts only in a live run
            ran.add(req.task)
            running.append(req)
    info = h.client.status(rid)
    owed = succeeded | (failed if own_failure else set())
    assert info.status == ("REVERTED" if owed else "FAILED"), info
    assert undone == Counter(owed)  # each success (and own failure) reverted exactly once
    assert not any(t.status in states.TASK_ACTIVE for t in info.tasks.values()), info
    h_list = h.client.history(rid)
    settled = {
        e.scope: k
        for k, e in enumerate(h_list)
        if e.old != e.new and e.new in (states.REVERTED, states.FAILED) and e.scope in ran
    }
    below = descendants(n, edges)
    for k, e in enumerate(h_list):
        if e.new != states.REVERTING or e.scope == "run":
            continue
        for j in below[names.index(e.scope)]:
            s = names[j]
            if s in ran:
                assert settled[s] < k, (e.scope, s, [(x.scope, x.old, x.new) for x in h_list])


def test_a_map_element_skipped_while_its_run_failed_runs_again_on_retry() -> None:
    h = Harness()
    fl = flow.graph("mapskip", mk, flow.map(sq, over="ids", provides="sqs", limit=1), other).compile(reg)
    rid = h.client.submit(fl, {})
    h.pump()
    reqs = h.by_task()
    h.ok(reqs["mk"], ids=[1, 2, 3])
    [first] = h.requests()
    h.fail(reqs["other"])
    reason, report = deliver(h, first)  # the element's request reaches a worker only now
    assert report and "FAILED" in reason
    h.send(not_started(first, "w", reason))
    h.pump()
    assert h.status(rid)[0] == "FAILED"
    h.control(rid, protocol.RUN_RETRY)
    for _ in range(5):
        for r in h.requests():
            h.ok(r, **({"zc": 2} if r.task == "other" else {r.task: r.args["n"] ** 2}))
    assert h.status(rid)[0] == "SUCCESS"
    assert h.client.status(rid).result == {"sqs": [1, 4, 9], "zc": 2}
