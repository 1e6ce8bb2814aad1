"""Engine decisions in corner cases, each of which was once a bug (found by review).

Driven event by event on the in-memory store and transport, so every interleaving is exact.
"""

from __future__ import annotations

from typing import Any

from runner import flow, protocol, task
from runner.broker import ENGINE_QUEUE, Outgoing
from runner.define.tasks import Registry
from runner.protocol import Event
from tests.helpers.harness import Harness

reg = Registry()


@task(provides="x", registry=reg)
def a() -> int:
    return 0


@task(provides="yb", registry=reg)
def b(x: int) -> int:
    return 1


@task(provides="z", registry=reg)
def c(x: int, yb: int | None = None) -> int:
    return 2


@task(registry=reg)
def step(**kw: Any) -> int:
    return 1


def test_a_skip_reaching_a_join_fed_in_the_same_commit_counts_both() -> None:
    h = Harness()
    fl = flow.graph("skipjoin", a, b, c, edges=[("a", "b", flow.when("x"))])  # a->b (if x), a->c, b->c
    rid = h.client.submit(fl.compile(reg), {})
    h.pump()
    h.ok(h.by_task()["a"], x=0)
    assert [r.task for r in h.requests()] == ["c"]
    assert h.status(rid) == ("RUNNING", {"a": "SUCCESS", "b": "SKIPPED", "c": "SCHEDULED"})


def test_a_long_chain_of_skips_is_decided_in_one_event() -> None:
    h = Harness()
    nodes = [step.bind(f"s{i}") for i in range(200)]
    edges = [("a", "s0", flow.when("x"))] + [(f"s{i}", f"s{i + 1}") for i in range(199)]
    rid = h.client.submit(flow.graph("chain", a, *nodes, edges=edges).compile(reg), {})
    h.pump()
    h.ok(h.by_task()["a"], x=0)
    status, tasks = h.status(rid)
    assert status == "SUCCESS" and sum(1 for s in tasks.values() if s == "SKIPPED") == 200
    assert h.dead_letters() == []


@task(provides="p1", registry=reg)
def q1() -> int:
    return 1


@task(provides="p2", registry=reg)
def q2() -> int:
    return 2


@task(provides="joined", registry=reg)
def anyjoin(p1: int | None = None, p2: int | None = None) -> int:
    return 0


def test_retry_of_a_run_whose_sinks_all_finished_after_the_failure_completes_it() -> None:
    h = Harness()
    fl = flow.graph("anyj", q1, q2, anyjoin.bind(join="any"), edges=[("q1", "anyjoin"), ("q2", "anyjoin")])
    rid = h.client.submit(fl.compile(reg), {})
    h.pump()
    reqs = h.by_task()
    h.ok(reqs["q1"], p1=1)
    [sink] = h.requests()
    h.fail(reqs["q2"])  # the run fails
    h.ok(sink, joined=5)  # and its only sink finishes afterwards
    assert h.status(rid)[0] == "FAILED"
    h.control(rid, protocol.RUN_RETRY)
    assert h.status(rid)[0] == "SUCCESS"
    assert h.client.status(rid).result == {"joined": 5}


@task(provides="zc", registry=reg)
def other() -> int:
    return 2


def test_retry_after_a_skip_decided_while_the_run_was_failed() -> None:
    h = Harness()
    rid = h.client.submit(
        flow.graph("condretry", a, b, other, edges=[("a", "b", flow.when("x"))]).compile(reg), {}
    )
    h.pump()
    reqs = h.by_task()
    h.fail(reqs["other"])
    h.ok(reqs["a"], x=0)  # b's skip is decided while the run is FAILED
    assert h.status(rid)[1]["b"] == "SKIPPED"
    h.control(rid, protocol.RUN_RETRY)
    [again] = h.requests()
    h.ok(again, zc=2)
    assert h.status(rid)[0] == "SUCCESS"


@task(provides="ids", registry=reg)
def mk() -> list[int]:
    return [1, 2, 3]


@task(provides="sq", registry=reg)
def sq(n: int) -> int:
    return n * n


def test_retry_restarts_the_elements_a_map_stopped_starting_when_its_run_failed() -> None:
    h = Harness()
    fl = flow.graph("mapretry", mk, flow.map(sq, over="ids", provides="sqs", limit=1), other)
    rid = h.client.submit(fl.compile(reg), {})
    h.pump()
    reqs = h.by_task()
    h.ok(reqs["mk"], ids=[1, 2, 3])
    [first] = h.requests()
    h.fail(reqs["other"])
    h.ok(first, **{first.task: 1})
    assert h.requests() == []  # a failed run starts nothing
    h.control(rid, protocol.RUN_RETRY)
    for _ in range(5):
        for r in h.requests():
            h.ok(r, **({"zc": 2} if r.task == "other" else {r.task: r.args["n"] ** 2}))
    assert h.status(rid)[0] == "SUCCESS"
    assert h.client.status(rid).result == {"sqs": [1, 4, 9], "zc": 2}


@task(provides="o1", registry=reg)
def r1() -> int:
    return 1


@r1.revert
def r1_undo(result: int) -> None:
    return None


@task(provides="o2", registry=reg)
def slow() -> int:
    return 2


@slow.revert
def slow_undo(result: int) -> None:
    return None


@task(provides="o3", registry=reg)
def bad() -> int:
    raise ValueError


def test_compensation_waits_for_a_revertable_task_still_running() -> None:
    h = Harness()
    rid = h.client.submit(flow.unordered("rev", r1, slow, bad).compile(reg), {})
    h.pump()
    reqs = h.by_task()
    h.ok(reqs["r1"], o1=1)
    h.fail(reqs["bad"])
    [undo_r1] = h.requests()
    h.reverted(undo_r1)
    assert h.status(rid)[0] == "REVERTING"  # slow still runs: its success must be reverted too
    h.ok(reqs["slow"], o2=2)
    [undo_slow] = h.requests()
    assert (undo_slow.task, undo_slow.mode, undo_slow.result) == ("slow", "revert", 2)
    h.reverted(undo_slow)
    assert h.status(rid) == ("REVERTED", {"bad": "FAILED", "r1": "REVERTED", "slow": "REVERTED"})


def test_a_retried_run_ignores_its_first_deadline() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("dl", q1).compile(reg), {}, timeout_s=2.0)
    h.pump()
    h.fail(h.by_task()["q1"])
    h.control(rid, protocol.RUN_RETRY)
    assert len(h.requests()) == 1
    due, _ = h.store.claim_timers(protocol.now_ms() + 60_000, 10, 60_000)
    deadlines = sorted((t for t in due if ":deadline:" in t.timer_id), key=lambda t: len(t.timer_id))
    assert len(deadlines) == 2  # the first run's and the retry's
    for t in deadlines:
        h.hub.connect().publish([Outgoing(ENGINE_QUEUE, t.timer_id, t.event)])
        h.pump()
        if t is deadlines[0]:
            assert h.status(rid)[0] == "RUNNING"  # the old deadline is ignored
    info = h.client.status(rid)
    assert info.status == "FAILED" and info.error is not None and info.error["type"] == "RunTimeout"


def test_retry_of_a_failed_map_keeps_its_completed_elements() -> None:
    h = Harness()
    rid = h.client.submit(
        flow.linear("m", mk, flow.map(sq, over="ids", provides="sqs", limit=0)).compile(reg), {}
    )
    h.pump()
    h.ok(h.by_task()["mk"], ids=[1, 2, 3])
    items = h.by_task()
    assert sorted(items) == ["sq[0]", "sq[1]", "sq[2]"]
    h.ok(items["sq[0]"], **{"sq[0]": 1})
    h.fail(items["sq[1]"])  # no retry policy: the map and the run fail
    h.ok(items["sq[2]"], **{"sq[2]": 9})  # finishes after the failure: kept all the same
    assert h.status(rid)[0] == "FAILED"
    h.control(rid, protocol.RUN_RETRY)
    [again] = h.requests()  # only the failed element runs again
    assert (again.task, again.attempt, again.args) == ("sq[1]", 2, {"n": 2})
    h.ok(again, **{"sq[1]": 4})
    info = h.client.status(rid)
    assert info.status == "SUCCESS" and info.result == {"sqs": [1, 4, 9]}


def test_the_run_failure_line_shows_the_error_message() -> None:
    h = Harness()
    rid = h.client.submit(flow.linear("msg", q1).compile(reg), {})
    h.pump()
    [req] = h.requests()
    body = {"error": {"type": "ValueError", "message": "no such user: ann"}, "worker": "w"}
    h.send(
        Event(protocol.TASK_FAILED, protocol.result_id(rid, "q1", 1), rid, "q1", 1, body, protocol.now_ms())
    )
    h.pump()
    [line] = [e.describe() for e in h.client.history(rid) if e.scope == "run" and e.new == "FAILED"]
    assert line == "run: RUNNING -> FAILED  [ValueError: no such user: ann]"


def test_a_forged_failure_event_stores_no_more_than_the_caps() -> None:
    from runner import caps

    h = Harness()
    rid = h.client.submit(flow.linear("big", q1).compile(reg), {})
    h.pump()
    [req] = h.requests()
    huge = {"type": "T" * 40_000, "message": "m" * 1_000_000, "traceback": "t" * 1_000_000}
    body = {"error": {**huge, "types": ["X" * 1000] * 1000}, "worker": "w"}
    h.send(
        Event(protocol.TASK_FAILED, protocol.result_id(rid, "q1", 1), rid, "q1", 1, body, protocol.now_ms())
    )
    h.pump()
    info = h.client.status(rid)
    for err in (info.error, info.tasks["q1"].error):
        assert err is not None
        assert len(err["message"]) == caps.MESSAGE_CHARS and len(err["type"]) == caps.TYPE_CHARS
        assert len(err["traceback"]) == caps.TRACEBACK_CHARS
        assert len(err["types"]) == caps.TYPES_COUNT and {len(t) for t in err["types"]} == {caps.TYPE_CHARS}
    for e in h.client.history(rid):
        assert len(str(e.extra.get("error", ""))) <= caps.MESSAGE_CHARS
        assert len(str(e.extra.get("error_type", ""))) <= caps.TYPE_CHARS


def test_an_outside_failure_is_capped_before_it_is_sent() -> None:
    from runner import caps
    from runner.client import Client
    from runner.config import Config

    h = Harness()
    client = Client(Config(secret="s"), h.store, h.hub.connect)
    rid = h.client.submit(flow.linear("outside", q1).compile(reg), {})
    h.pump()
    [req] = h.requests()
    sent: list[Outgoing] = []
    broker = client.broker
    publish = broker.publish

    def spy(msgs: list[Outgoing]) -> None:
        sent.extend(msgs)
        publish(msgs)

    broker.publish = spy  # type: ignore[method-assign]
    token = client.token_for(rid, "q1")
    assert client.fail(token, "e" * 1_000_000, error_type="T" * 40_000, wait_s=None) == "accepted"
    [msg] = sent
    assert len(msg.body) < 6_000  # the event itself, not only what the engine keeps
    h.pump()
    err = h.client.status(rid).tasks["q1"].error
    assert err is not None and len(err["message"]) == caps.MESSAGE_CHARS
    assert err["type"] == "T" * caps.TYPE_CHARS
