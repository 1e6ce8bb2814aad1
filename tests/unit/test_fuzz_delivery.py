"""Fuzzing one delivery to the engine and to a worker (memory store, in-process transport).

Whatever the body, the consumer settles it — acknowledged with its effect, refused or
ignored as an event the run's state does not allow, or dead-lettered with a reason — no
exception escapes, the loop keeps serving, and a run going on at the same time finishes
with the right result (H1: one bad message once ended every consumer it reached).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from runner import flow, protocol, task
from runner.broker import ENGINE_QUEUE, Outgoing, task_queue
from runner.broker.local import LocalBroker
from runner.config import Config
from runner.define.tasks import Registry
from runner.protocol import Event, TaskRequest
from tests.helpers import flows
from tests.helpers.harness import Harness
from tests.helpers.wire import FIELDS, values
from workers.loop import Worker

pytestmark = pytest.mark.fuzz

HEALTHY, VICTIM = "healthy", "victim"
RETYPED = [None, True, -1, 2**64 - 1, 1.5, math.nan, "", b"x", [], {}, [1, 2], {"a": 1}, {1: 2}]


def mutate(draw: st.DrawFn, raw: dict[str, Any]) -> bytes:
    """The message's map, maybe with one field (top level or in the body) dropped, retyped
    or replaced by anything at all."""
    how = draw(st.sampled_from(["keep", "drop", "retype", "any"]))
    target = raw["body"] if "body" in raw and draw(st.booleans()) else raw
    name = draw(st.sampled_from(sorted(target)) | st.sampled_from(FIELDS))
    if how == "drop":
        target.pop(name, None)
    elif how == "retype":
        target[name] = draw(st.sampled_from(RETYPED))
    elif how == "any":
        target[name] = draw(values)
    event(f"mutation: {how}")
    return msgpack.packb(raw)


small = st.integers(min_value=0, max_value=3) | st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def victim_events(draw: st.DrawFn) -> bytes:
    """An event of any kind for the live run VICTIM (chain of s1, s2), plausible or not."""
    kind = draw(st.sampled_from(sorted(protocol.EVENT_KINDS)))
    body: dict[str, Any] = {
        "worker": "w",
        "by": "fuzz",
        "values": draw(
            st.sampled_from([{"v1": 1}, {"v2": 2}, {}]) | st.dictionaries(st.text(max_size=4), values)
        ),
        "error": draw(
            st.sampled_from([{"type": "E", "message": "m", "types": ["E"]}, {}])
            | st.dictionaries(st.text(max_size=6), values)
        ),
        "purpose": draw(st.sampled_from(["retry", "timeout", "lease", "deadline"]) | st.text(max_size=6)),
        "flow": "chain2",
        "spec": draw(st.dictionaries(st.text(max_size=6), values, max_size=3)),
        "inputs": {"v0": 0},
    }
    body = {k: v for k, v in body.items() if k in protocol._EVENT_BODY[kind] or draw(st.booleans())}
    ev = Event(
        kind,
        draw(
            st.sampled_from([protocol.result_id(VICTIM, "s1", 1), f"fuzz:{kind}"])
            | st.text(min_size=1, max_size=8)
        ),
        VICTIM,
        draw(st.sampled_from(["s1", "s2", "", "nope"])),
        draw(small),
        body,
        draw(st.integers(min_value=0, max_value=2**63 - 1)),
    )
    return mutate(draw, protocol.unpack(protocol.encode(ev)))


engine_bodies = st.binary(max_size=100) | victim_events()


def dead_reasons(h: Harness) -> list[str]:
    return [str(d.headers["x-ackflow-reason"]) for d in h.dead_letters()]


@given(st.lists(engine_bodies, min_size=1, max_size=2))
def test_the_engine_settles_any_delivery_and_keeps_serving(bodies: list[bytes]) -> None:
    h = Harness()
    h.client.submit(flows.chain(2), {"v0": 0}, run_id=HEALTHY)
    h.client.submit(flows.chain(2), {"v0": 10}, run_id=VICTIM)
    h.pump()
    reqs = {r.run_id: r for r in h.requests()}
    # One batch: the fuzzed bodies around the healthy run's next result.
    raw = h.hub.connect()
    raw.publish([Outgoing(ENGINE_QUEUE, "fuzz-0", bodies[0])])
    h.send(h.result(reqs[HEALTHY], v1=1))
    raw.publish([Outgoing(ENGINE_QUEUE, f"fuzz-{i}", b) for i, b in enumerate(bodies[1:], 1)])
    for _ in range(5):  # the healthy run's steps; nothing the fuzz did may stop them
        h.pump()
        for r in h.requests():
            if r.run_id == HEALTHY:
                h.send(h.result(r, **{r.provides[0]: r.args["x"] + 1}))
    h.pump()
    info = h.client.status(HEALTHY)
    assert (info.status, info.result) == ("SUCCESS", {"v2": 2})
    assert h.hub.depth(ENGINE_QUEUE) == 0
    assert isinstance(h.engine.broker, LocalBroker) and h.engine.broker._unacked == {}
    reasons = dead_reasons(h)
    assert all(reasons)
    event(f"dead letters: {len(reasons)}")


reg = Registry()


@task(provides="o", registry=reg)
def quick(x: int) -> int:
    return x + 1


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    req = TaskRequest(
        draw(st.text(min_size=1, max_size=8)),
        draw(st.sampled_from([VICTIM, "r"])),
        "quick",
        draw(st.sampled_from(["quick", "nope"])),
        draw(small),
        draw(st.sampled_from([{"x": 1}, {}, {"y": 2}, {"x": "one"}, {"x": 2**64 - 1}])),
        draw(st.sampled_from([["o"], [], ["a", "b"]])),
        draw(st.booleans()),
        0,
        draw(st.sampled_from([protocol.MODE_RUN, protocol.MODE_REVERT])),
        draw(values),
        draw(st.integers(min_value=0, max_value=2**63 - 1)),
    )
    return mutate(draw, protocol.unpack(protocol.encode(req)))


@given(st.binary(max_size=100) | requests())
def test_a_worker_settles_any_delivery_and_keeps_serving(body: bytes) -> None:
    h = Harness()
    h.tasks.close()  # the worker under test takes the requests
    w = Worker(Config(), h.hub.connect(), reg, concurrency=1, name="w1")
    w.start()
    try:
        h.hub.connect().publish([Outgoing(task_queue("default"), "fuzz", body)])
        rid = h.client.submit(flow.linear("q", quick).compile(reg), {"x": 1}, run_id=HEALTHY)
        # Short polls: a task that finishes just before the worker starts to wait cannot wake
        # it, so each round may wait out the whole poll. The bound is on rounds, not time.
        for _ in range(2_000):
            h.pump()
            if h.client.status(rid).done:
                break
            w.run_once(0.01)
        info = h.client.status(rid)
        assert (info.status, info.result) == ("SUCCESS", {"o": 2})
        while not w.idle:  # the fuzzed request may still be running: let it settle
            w.run_once(0.01)
        assert isinstance(w.broker, LocalBroker) and w.broker._unacked == {}
        assert h.hub.depth(task_queue("default")) == 0
        reasons = dead_reasons(h)
        assert all(reasons)
        event(f"dead letters: {len(reasons)}")
    finally:
        w._pool.shutdown()
