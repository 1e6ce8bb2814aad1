"""A run that fails while a map node is running: compensation waits for the map's started
elements, and must go on when the last of them ends.

Found by the simulator (seed 5889, ``long_task@77:W0=8000``): a map with a limit had two
elements running on a slow worker when a parallel task failed for good. The run went
REVERTING; its map node's predecessors waited for the running elements; the elements then
succeeded, but an element's success in a REVERTING run never took the next compensation
step, so the run stayed REVERTING for ever.

Driven event by event on the in-memory store and transport (`Harness`), so the interleaving
is exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from runner import flow, protocol, states, task
from runner.define.tasks import Registry
from tests.helpers.harness import Harness

reg = Registry()


@task(provides="s", registry=reg)
def src() -> int:
    return 1


@src.revert
def src_undo() -> None:
    return None


@task(provides="ids", registry=reg)
def ids(s: int) -> list[int]:
    return [1, 2, 3, 4]


@ids.revert
def ids_undo() -> None:
    return None


@task(provides="sq", registry=reg)
def sq(n: int) -> int:
    return n * n


@task(provides="bad_out", registry=reg)
def bad(s: int) -> int:
    raise ValueError("bad breaks")


FLOW = flow.graph("mapfail", src, ids, flow.map(sq, over="ids", provides="sqs", limit=2), bad).compile(reg)


def _failing_with_two_elements_running(h: Harness, items: list[int]) -> tuple[str, list[Any]]:
    """``src`` and ``ids`` done, the map's first two elements sent, then ``bad`` fails for good."""
    rid = h.client.submit(FLOW, {})
    h.pump()
    h.ok(h.one(), s=1)
    reqs = h.by_task()
    assert sorted(reqs) == ["bad", "ids"]
    h.ok(reqs["ids"], ids=items)
    elements = h.requests()
    assert sorted(r.task for r in elements) == ["sq[0]", "sq[1]"]
    h.fail(reqs["bad"])
    # ids (and src under it) wait: the map's elements still run and may read their inputs.
    assert h.requests() == []
    assert h.status(rid)[0] == states.REVERTING
    return rid, elements


def _reverted(h: Harness, rid: str) -> list[str]:
    return [e.scope for e in h.client.history(rid) if e.new == states.REVERTED and e.scope != "run"]


@pytest.mark.parametrize(
    "items",
    [
        pytest.param([1, 2, 3, 4], id="elements-left-unstarted"),  # the seed's case
        pytest.param([1, 2], id="every-element-running"),  # the map then finishes while reverting
    ],
)
def test_the_last_running_element_succeeding_lets_compensation_go_on(items: list[int]) -> None:
    h = Harness()
    rid, elements = _failing_with_two_elements_running(h, items)
    for r in elements:
        h.ok(r, **{r.task: r.args["n"] ** 2})  # an element provides its own name
    [undo_ids] = h.requests()  # the bug: none, and the run stayed REVERTING for ever
    assert (undo_ids.task, undo_ids.mode) == ("ids", protocol.MODE_REVERT)
    h.reverted(undo_ids)
    [undo_src] = h.requests()
    assert (undo_src.task, undo_src.mode) == ("src", protocol.MODE_REVERT)
    h.reverted(undo_src)
    assert h.requests() == []  # no element started once the run was failing
    assert h.status(rid)[0] == states.REVERTED
    assert _reverted(h, rid) == ["ids", "src"]


def test_compensation_waits_for_every_running_element() -> None:
    h = Harness()
    rid, [first, second] = _failing_with_two_elements_running(h, [1, 2, 3, 4])
    h.ok(first, **{first.task: 1})
    assert h.requests() == []  # the second element still runs: ids is not reverted under it
    assert h.status(rid)[0] == states.REVERTING
    h.fail(second)  # its failure fails the map node; compensation goes on as well
    [undo_ids] = h.requests()
    assert undo_ids.task == "ids"
