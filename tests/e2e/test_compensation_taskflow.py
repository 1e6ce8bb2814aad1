"""Compensation as TaskFlow defines it (issue 16, item 2), end to end in both modes (real
RabbitMQ + Redis with engine and worker processes, and local mode): the failed task's own
handler gets the failure, reverted results leave the run's data, a map's handler runs per
element — each with the order successors before predecessors."""

from __future__ import annotations

import pytest

from runner.store import keys
from tests.e2e.test_semantics import Env, env, key  # noqa: F401 - env: the fixture of both modes
from tests.helpers import semantic_flows as sf

pytestmark = pytest.mark.services


def data_names(env: Env, rid: str) -> set[str]:  # noqa: F811 - env: the fixture's value
    return set(env.client.store.read_all(rid, keys.DATA))


def test_the_failed_task_is_reverted_with_its_failure_before_its_predecessors(env: Env) -> None:  # noqa: F811
    log = key("log")
    rid = env.client.submit(sf.failed_ship_flow, {"item": "A", "log": log})
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {"reserve": "REVERTED", "charge": "REVERTED", "ship_partly": "REVERTED"}
    assert sf.recorded(log) == [
        "reserve",
        "charge",
        "ship-partly",
        "unship:None:RuntimeError:courier lost the parcel:1",  # no result; the failure
        "refund:ch-res-A",
        "unreserve:res-A",
    ]
    h = env.history(rid)
    assert [e.scope for e in h if e.new == "REVERTED" and e.scope != "run"] == [
        "ship_partly",
        "charge",
        "reserve",
    ]
    assert info.error is not None and info.error["task"] == "ship_partly"
    assert info.tasks["ship_partly"].error is not None  # what failed stays shown
    # (b) the reverted results are gone from the run's data; the inputs stay
    assert data_names(env, rid) == {"item", "log"}


def test_a_map_handler_runs_per_element_that_succeeded_last_first(env: Env) -> None:  # noqa: F811
    log = key("log")
    rid = env.client.submit(sf.seats_flow, {"item": "S", "seats": [7, 8, 9], "log": log})
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {"reserve": "REVERTED", "book": "REVERTED", "pay_seats": "FAILED"}
    assert sf.recorded(log) == [
        "reserve",
        "book:7",
        "book:8",
        "book:9",
        "unbook:9:seat-9",
        "unbook:8:seat-8",
        "unbook:7:seat-7",
        "unreserve:res-S",
    ]
    h = env.history(rid)
    assert [e.scope for e in h if e.new == "REVERTED" and e.scope != "run"] == [
        "book[2]",
        "book[1]",
        "book[0]",
        "book",
        "reserve",
    ]
    left = data_names(env, rid)
    assert not {"reserved", "bookings", "book[0]", "book[1]", "book[2]"} & left, left
