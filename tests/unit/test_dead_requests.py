"""A task request that RabbitMQ itself dead-lettered (its queue's x-delivery-limit) ends its
attempt with the reason, once, instead of leaving the run RUNNING forever. The copy the
engines get on the ``dead.watch`` queue is written here as RabbitMQ writes it (x-death
headers, body untouched); tests/cluster/test_nack.py has RabbitMQ do it for real."""

from __future__ import annotations

from typing import Any

import pytest

from runner import protocol
from runner.broker import DEAD_WATCH_QUEUE, H_COUNT, H_QUEUE, H_REASON, Outgoing, task_queue
from runner.protocol import TaskRequest
from tests.helpers import flows
from tests.helpers.harness import CFG, Harness


def broker_dead_copy(req: TaskRequest, **headers: Any) -> Outgoing:
    physical = f"{CFG.prefix}.{task_queue('default')}"
    death = {
        "reason": "delivery_limit",
        "queue": physical,
        "count": 1,
        "exchange": CFG.prefix,
        "routing-keys": [task_queue("default")],
    }
    x = {
        "x-death": [death],
        "x-first-death-queue": physical,
        "x-first-death-reason": "delivery_limit",
        "x-first-death-exchange": CFG.prefix,
        "x-delivery-count": 20,
        **headers,
    }
    return Outgoing(DEAD_WATCH_QUEUE, req.id, protocol.encode(req), x)


def test_a_request_the_broker_dead_lettered_fails_its_attempt_once_with_the_reason() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    h.hub.connect().publish([broker_dead_copy(req)])
    h.pump()
    info = h.client.status(rid)
    assert info.status == "FAILED", info
    s1 = info.tasks["s1"]
    assert (s1.status, s1.attempt) == ("FAILED", 1)
    assert s1.error is not None and s1.error["type"] == "DeadLettered"
    assert "dead-lettered by RabbitMQ (broker: delivery_limit) from task.default" in s1.error["message"]
    history = h.client.history(rid)
    # the same copy again (an engine died before its ack), then the attempt's own late result
    h.hub.connect().publish([broker_dead_copy(req)])
    h.send(h.result(req, v1=1))
    h.pump()
    assert h.client.history(rid) == history
    assert h.requests() == []


def test_copies_of_our_own_dead_letters_change_nothing() -> None:
    """An engine or worker dead-lettered it with a reason and settled its case already."""
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    ours = {H_REASON: "poison: ...", H_QUEUE: task_queue("default"), H_COUNT: 5}
    h.hub.connect().publish([broker_dead_copy(req, **ours)])
    history = h.client.history(rid)
    h.pump()
    assert h.client.history(rid) == history and h.client.status(rid).status == "RUNNING"
    assert h.hub.depth(DEAD_WATCH_QUEUE) == 0  # taken and acknowledged


def test_a_copy_whose_failure_could_not_be_published_comes_back_and_events_go_on() -> None:
    """Not acknowledged before its failure event is confirmed; the events beside it in the
    batch are handled as usual."""
    from runner.errors import BrokerUnavailable

    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    broker = h.engine.broker
    publish = broker.publish

    def refused(messages: Any) -> None:
        if any(m.message_id.startswith("result:") for m in messages):
            raise BrokerUnavailable("nacked on 5 publishing channels in a row")
        publish(messages)

    broker.publish = refused  # type: ignore[method-assign]
    h.hub.connect().publish([broker_dead_copy(req)])
    other = h.client.submit(flows.chain(1), {"v0": 0})
    deliveries = broker.poll(0)
    assert {d.queue for d in deliveries} == {DEAD_WATCH_QUEUE, "engine"}
    assert h.engine.handle_batch(deliveries) is False
    assert h.client.status(other).status == "RUNNING"  # its submit event was applied
    assert h.client.status(rid).status == "RUNNING" and h.hub.depth(DEAD_WATCH_QUEUE) == 1
    broker.publish = publish  # type: ignore[method-assign]
    h.pump()
    assert h.client.status(rid).status == "FAILED"


def test_copies_with_malformed_broker_headers_cost_no_engine() -> None:
    """Anyone who can publish to the dead queue's routing key puts a message on dead.watch with
    the headers they like: an x-death that is no list of maps, a count that is no number. Such a
    copy is acknowledged and logged; it must not raise out of the engine (H1: every engine it
    is handed to next would die too), and the events beside it are applied."""
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    physical = f"{CFG.prefix}.{task_queue('default')}"
    forged = [
        {"x-death": "garbage"},
        {"x-death": [1, 2]},
        {"x-death": [{"queue": physical, "count": "many"}]},
        {"x-death": [{"queue": physical}], "x-delivery-count": "abc"},
        {"x-death": [{"queue": 7, "reason": ["x"]}], "x-first-death-queue": {"a": 1}},
    ]
    h.hub.connect().publish(
        [Outgoing(DEAD_WATCH_QUEUE, f"forged-{i}", protocol.encode(req), x) for i, x in enumerate(forged)]
    )
    h.send(h.result(req, v1=1))
    h.pump()
    assert h.hub.depth(DEAD_WATCH_QUEUE) == 0  # taken and acknowledged
    [nxt] = h.requests()
    assert nxt.task == "s2" and h.client.status(rid).status == "RUNNING"


def test_a_copy_the_engine_fails_to_read_is_acknowledged_and_events_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever reading one copy raises (here, a bug) is that copy's alone: it is logged and
    acknowledged (the dead letter itself stays in the dead queue), the engine keeps serving."""
    from runner.engine import dead_requests

    real = dead_requests.failure_of

    def buggy(copy: Any, prefix: str) -> Any:
        if copy.message_id == "bug":
            raise RuntimeError("reader bug")
        return real(copy, prefix)

    monkeypatch.setattr(dead_requests, "failure_of", buggy)
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    [req] = h.requests()
    copy = broker_dead_copy(req)
    h.hub.connect().publish([Outgoing(DEAD_WATCH_QUEUE, "bug", copy.body, copy.headers)])
    h.send(h.result(req, v1=1))
    h.pump()
    assert h.hub.depth(DEAD_WATCH_QUEUE) == 0
    [nxt] = h.requests()
    assert nxt.task == "s2" and h.client.status(rid).status == "RUNNING"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-death": "garbage"},
        {"x-death": [1, 2], "x-delivery-count": "abc"},
        {"x-death": [{"queue": 7, "count": "many", "reason": ["x"]}], "x-first-death-queue": {"a": 1}},
        {H_REASON: "forged", H_COUNT: "abc"},  # ours in name only: no queue, a count that is text
    ],
)
def test_dead_letter_headers_of_any_shape_read_as_unknown(headers: dict[str, Any]) -> None:
    """`ackflow dlq list`, the dashboard's /dlq and the engines read these headers: never a crash."""
    from runner.broker import from_headers

    dl = from_headers("m", b"", headers, f"{CFG.prefix}.")
    assert dl.delivery_count == 0 and isinstance(dl.queue, str) and isinstance(dl.reason, str)
