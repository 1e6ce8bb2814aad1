"""H1 end to end: the messages that killed every engine and worker they reached, published
raw to real queues, are dead-lettered with a decode reason; the processes keep serving."""

from __future__ import annotations

import datetime
from typing import Any

import amqp
import pytest

from runner.broker.kombu import KombuBroker
from runner.client import Client
from runner.config import Config
from runner.protocol import CONTENT_TYPE
from tests.helpers import flows
from tests.helpers.processes import Processes
from tests.helpers.wire import KILLERS, with_header_timestamp

pytestmark = pytest.mark.services


def test_messages_that_killed_consumers_are_dead_lettered_and_both_keep_serving(
    procs: Processes, client: Client, config: Config
) -> None:
    engine = procs.engine()
    worker = procs.worker("-c", "2")
    raw = KombuBroker(config)
    try:
        raw.declare(["task.default"])
        for queue in ("engine", "task.default"):
            for body, _ in KILLERS:
                raw.publish_raw(queue, body)
        # Both queues are first in, first out: once a run submitted after the junk has
        # finished, each process has taken (and settled) every bad message before its own.
        rid = client.submit(flows.chain(3), {"v0": 0})
        info = procs.wait(client, rid)
        assert (info.status, info.result) == ("SUCCESS", {"v3": 3}), procs.logs()
        assert engine.poll() is None and worker.poll() is None, procs.logs()
        dead = []
        while (d := raw.get("dead")) is not None:
            dead.append(d)
            raw.ack(d)
        got = sorted((str(d.headers["x-ackflow-queue"]), d.body) for d in dead)
        assert got == sorted((q, b) for q in ("engine", "task.default") for b, _ in KILLERS)
        for d in dead:
            [reason] = [r for b, r in KILLERS if b == d.body]
            assert reason in d.headers["x-ackflow-reason"], d.headers
        # Still serving after the barrage: another run goes through, nothing died.
        again = client.submit(flows.chain(2), {"v0": 5})
        assert procs.wait(client, again).result == {"v2": 7}
        procs.assert_alive()
    finally:
        raw.close()


def test_dead_letters_with_forged_broker_headers_cost_no_engine(
    procs: Processes, client: Client, config: Config
) -> None:
    """Every message on the dead queue's routing key is copied to dead.watch, which engines
    read: headers forged by a publisher (x-death that is no list of maps, a count that is
    text) once raised out of the engine, and each engine the copy went to next died too."""
    import msgpack

    from runner.broker import Outgoing
    from tests.helpers.wire import REQUEST

    engine = procs.engine()
    procs.worker("-c", "1")
    raw = KombuBroker(config)
    physical = f"{config.prefix}.task.default"
    try:
        first = client.submit(flows.chain(2), {"v0": 0})
        assert procs.wait(client, first).result == {"v2": 2}  # the engine consumes (dead.watch too)
        body = msgpack.packb(REQUEST)
        raw.publish(
            [
                Outgoing("dead", "forged-garbage", body, {"x-death": "garbage"}),
                Outgoing("dead", "forged-count", body, {"x-death": [{"queue": physical, "count": "many"}]}),
            ]
        )
        # dead.watch is first in, first out: once the second copy is read, so was the first
        procs.until_logged(engine, "task request forged-count was dead-lettered by the broker")
        rid = client.submit(flows.chain(2), {"v0": 5})
        assert procs.wait(client, rid).result == {"v2": 7}
        assert engine.poll() is None, procs.logs()
        listed = procs.run("dlq", "list")
        assert listed.returncode == 0 and "forged-garbage" in listed.stdout, listed
    finally:
        raw.close()


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_a_forged_delivery_count_header_costs_no_consumer(
    procs: Processes, client: Client, config: Config, queue_type: str
) -> None:
    """``x-delivery-count`` is RabbitMQ's on a redelivery from a quorum queue, but a publisher
    can set it on the first delivery (and on a classic queue, always): any value, not only an
    int, reaches the consumer, which must settle the message and keep serving."""
    env = {"ACKFLOW_QUEUE_TYPE": queue_type}
    cfg = config.with_(queue_type=queue_type)
    engine = procs.engine(env=env)
    worker = procs.worker("-c", "1", env=env)
    raw = KombuBroker(cfg)
    try:
        raw.declare(["task.default"])
        from runner.broker import Outgoing

        for queue in ("engine", "task.default"):
            raw.publish(
                [
                    Outgoing(queue, f"forged-{queue}-{i}", b"\xc1", {"x-delivery-count": v})
                    for i, v in enumerate(["abc", [1], -5, 2**40])
                ]
            )
        c = Client.from_config(cfg)
        try:
            rid = c.submit(flows.chain(2), {"v0": 0})
            assert procs.wait(c, rid).result == {"v2": 2}, procs.logs()
        finally:
            c.close()
        assert engine.poll() is None and worker.poll() is None, procs.logs()
        dead = []
        while (d := raw.get("dead")) is not None:
            dead.append(str(d.message_id))
            raw.ack(d)
        assert sorted(dead) == sorted(f"forged-{q}-{i}" for q in ("engine", "task.default") for i in range(4))
    finally:
        raw.close()


ENCODINGS, SENT = ("unicode_escape", "utf-16", "latin-1"), (b"\\ud800", b"\x00\xd8", b"\xc1\xe9")


def test_a_body_with_an_odd_content_encoding_costs_no_consumer(
    procs: Processes, client: Client, config: Config
) -> None:
    """py-amqp decodes a body to text by its ``content_encoding`` property, which a publisher
    sets: a codec that yields lone surrogates (unicode_escape of ``\\ud800``) once made the
    adapter's conversion back to bytes raise in the consumer."""
    import amqp

    engine = procs.engine()
    worker = procs.worker("-c", "1")
    raw = KombuBroker(config)
    try:
        raw.declare(["task.default"])
    finally:
        raw.close()
    conn = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        ch = conn.channel()
        ch.confirm_select()
        for rk in ("engine", "task.default"):
            for i, (encoding, body) in enumerate(zip(ENCODINGS, SENT, strict=True)):
                message = amqp.basic_message.Message(
                    body, content_type="application/x-msgpack", content_encoding=encoding,
                    message_id=f"odd-{rk}-{i}", delivery_mode=2,
                )  # fmt: skip
                ch.basic_publish(message, exchange=config.prefix, routing_key=rk, mandatory=True)
    finally:
        conn.close()
    rid = client.submit(flows.chain(2), {"v0": 0})
    assert procs.wait(client, rid).result == {"v2": 2}, procs.logs()
    assert engine.poll() is None and worker.poll() is None, procs.logs()
    # dead-lettered as sent: the bytes published, not a text decoded and encoded again
    reader = KombuBroker(config)
    try:
        listed = {dl.id: dl.body for dl in reader.list_dead()}
    finally:
        reader.close()
    assert listed == {
        f"odd-{rk}-{i}": body for rk in ("engine", "task.default") for i, body in enumerate(SENT)
    }, listed


class _Stamped(amqp.basic_message.Message):  # type: ignore[misc]
    """A message whose header holds a timestamp past year 9999 (py-amqp writes only datetimes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, application_headers={"t": datetime.datetime(2000, 1, 1)}, **kwargs)

    def _serialize_properties(self) -> bytes:
        return with_header_timestamp(2**64 - 1, super()._serialize_properties())


def test_a_property_that_is_not_utf8_costs_no_consumer(
    procs: Processes, client: Client, config: Config
) -> None:
    """AMQP short strings (message id, content type) and header timestamps reach the consumer as
    the publisher wrote them; py-amqp decodes them while it reads the frame, so bytes that are
    not UTF-8, or a timestamp past datetime's range, raised inside the client library."""

    engine = procs.engine()
    worker = procs.worker("-c", "1")
    raw = KombuBroker(config)
    try:
        raw.declare(["task.default"])
    finally:
        raw.close()
    conn = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        ch = conn.channel()
        ch.confirm_select()
        for rk in ("engine", "task.default"):
            for props in ({"message_id": b"\xff\xfe"}, {"content_type": b"\xff"}):
                message = amqp.basic_message.Message(b"\xc1", delivery_mode=2, **props)
                ch.basic_publish(message, exchange=config.prefix, routing_key=rk, mandatory=True)
            stamped = _Stamped(b"\xc1", delivery_mode=2, content_type=CONTENT_TYPE, message_id=f"t-{rk}")
            ch.basic_publish(stamped, exchange=config.prefix, routing_key=rk, mandatory=True)
    finally:
        conn.close()
    rid = client.submit(flows.chain(2), {"v0": 0})
    assert procs.wait(client, rid, timeout_s=60).result == {"v2": 2}, procs.logs()
    assert engine.poll() is None and worker.poll() is None, procs.logs()
    reader = KombuBroker(config)
    try:  # each settled: dead-lettered with its reason, none left unacknowledged
        dead = reader.list_dead()
    finally:
        reader.close()
    assert sorted(dl.queue for dl in dead) == ["engine"] * 3 + ["task.default"] * 3, dead
    assert all("content type" in dl.reason or "msgpack" in dl.reason for dl in dead), dead
