"""A map node that finishes the moment it starts (an empty list) must still finish its run."""

from __future__ import annotations

import pytest

from runner import flow, task
from runner.define.tasks import Registry
from runner.errors import WaitTimeout
from runner.local import LocalRuntime

reg = Registry()


@task(provides="doubled", registry=reg)
def double(x: int) -> int:
    return 2 * x


@pytest.fixture(scope="module")
def rt():
    with LocalRuntime(registry=reg, concurrency=2) as runtime:
        yield runtime


def test_a_map_over_an_empty_list_first_in_its_flow_finishes(rt: LocalRuntime) -> None:
    f = flow.linear("empty-map", flow.map(double, over="xs"))
    try:
        info = rt.run(f.compile(reg), {"xs": []}, timeout_s=10)
    except WaitTimeout as e:  # the bug: the run stayed RUNNING for ever
        pytest.fail(f"the run never finished: {e}")
    assert info.status == "SUCCESS"
    assert info.result == {"doubled": []}


def test_two_empty_maps_side_by_side_finish_their_run(rt: LocalRuntime) -> None:
    f = flow.unordered(
        "two-empty-maps",
        flow.map(double, over="xs", name="left", provides="l"),
        flow.map(double, over="ys", name="right", provides="r"),
    )
    info = rt.run(f.compile(reg), {"xs": [], "ys": []}, timeout_s=10)
    assert (info.status, info.result) == ("SUCCESS", {"l": [], "r": []})
