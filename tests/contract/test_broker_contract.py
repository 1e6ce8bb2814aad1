"""One contract, two brokers: the in-process broker of local mode and RabbitMQ (through kombu)
must behave the same wherever the engine, the workers or the operator surfaces rely on it.

Written against `runner.broker.Broker` and `runner.broker.DeadLetters` only; what an adapter
cannot be asked through the protocol (making a queue vanish for the unroutable case) is a hook
of the fixture. Every wait is bounded by a generous deadline and ends on the awaited delivery.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from runner.broker import (
    DEAD_QUEUE,
    ENGINE_QUEUE,
    H_COUNT,
    H_QUEUE,
    H_REASON,
    Broker,
    DeadLetterNotFound,
    DeadLetters,
    Delivery,
    Outgoing,
    QueueInfo,
    QueueStats,
    task_queue,
)
from runner.broker.kombu_topology import queue_arguments
from runner.broker.local import LocalHub
from runner.config import Config
from runner.connect import open_broker
from runner.errors import BrokerError, BrokerUnavailable, PublishError
from runner.protocol import CONTENT_TYPE

# The config fixture deletes these queues (and the exchange) after each test.
QUEUE = task_queue("default")
OTHER = task_queue("other")
PATIENCE_S = 30.0  # a deadline for what must arrive, never a measured duration


@dataclass
class Brokers:
    name: str
    open: Callable[[], Broker]
    # Make `queue` unroutable behind the brokers' backs; None when the adapter cannot
    # have an unroutable message (say why in `unroutable_why`).
    drop_queue: Callable[[str], None] | None = None
    unroutable_why: str = ""


@pytest.fixture(params=["local", "kombu"])
def brokers(request: pytest.FixtureRequest) -> Iterator[Brokers]:
    opened: list[Broker] = []

    def track(make: Callable[[], Broker]) -> Callable[[], Broker]:
        def open_one() -> Broker:
            b = make()
            opened.append(b)
            return b

        return open_one

    if request.param == "local":
        hub = LocalHub()
        yield Brokers(
            "local",
            track(hub.connect),
            unroutable_why="local mode's publish creates the queue it routes to and nothing "
            "deletes queues in process, so no message can be unroutable",
        )
    else:
        cfg: Config = request.getfixturevalue("config")

        def drop_queue(logical: str) -> None:
            admin = open_broker(cfg, attempts=1)
            try:
                admin._chan.queue_delete(queue=admin.physical(logical))
            finally:
                admin.close()

        yield Brokers("kombu", track(lambda: open_broker(cfg, role="contract")), drop_queue)
    for b in opened:
        b.close()


def msg(queue: str = QUEUE, **headers: object) -> Outgoing:
    return Outgoing(queue, f"m-{uuid.uuid4().hex}", b"\x81\xa1k\xa1v", dict(headers))


def take(b: Broker, n: int) -> list[Delivery]:
    """Exactly the next ``n`` deliveries (fails if they do not come within PATIENCE_S)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + PATIENCE_S
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} deliveries arrived"
        got += b.poll(0.5)
    assert len(got) == n, f"{len(got)} deliveries, wanted {n}"
    return got


def consumer(brokers: Brokers, *queues: str, prefetch: int = 10) -> Broker:
    b = brokers.open()
    b.declare(list(queues))
    b.consume(list(queues), prefetch)
    return b


def drained(b: Broker) -> bool:
    """Nothing more arrives (a short poll: used only after every sent message was taken)."""
    return b.poll(0.3) == []


def test_publish_delivers_body_id_headers_and_queue(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE)
    p = brokers.open()
    m = msg(trace="abc", n=3)
    p.publish([m])
    [d] = take(c, 1)
    assert (d.body, d.message_id, d.queue) == (m.body, m.message_id, QUEUE)
    assert d.headers["trace"] == "abc" and d.headers["n"] == 3
    assert d.content_type == CONTENT_TYPE
    assert not d.redelivered and d.delivery_count == 0
    c.ack(d)


def test_send_then_confirm_delivers_every_message_in_order(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE, prefetch=50)
    p = brokers.open()
    batch = [msg() for _ in range(20)]
    p.send(batch[:10])
    p.send(batch[10:])
    p.confirm()
    got = take(c, 20)
    assert [d.message_id for d in got] == [m.message_id for m in batch]
    for d in got:
        c.ack(d)


def test_prefetch_bounds_unacknowledged_deliveries(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE, prefetch=2)
    brokers.open().publish([msg() for _ in range(5)])
    first = take(c, 2)
    assert drained(c), "more than prefetch deliveries unacknowledged"
    for d in first:
        c.ack(d)
    rest = take(c, 2)
    for d in rest:
        c.ack(d)
    last = take(c, 1)
    c.ack(last[0])


def test_an_acknowledged_message_is_not_delivered_again(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE)
    brokers.open().publish([msg()])
    [d] = take(c, 1)
    c.ack(d)
    c.close()
    again = consumer(brokers, QUEUE)
    assert drained(again)


def test_unacknowledged_messages_are_redelivered_when_the_consumer_goes(brokers: Brokers) -> None:
    """Kombu: the consumer's connection closes; local: the consumer is closed. Either way the
    broker puts back what it held, marked redelivered, with the delivery counted."""
    c = consumer(brokers, QUEUE)
    m = msg(trace="kept")
    brokers.open().publish([m])
    [held] = take(c, 1)
    c.close()
    other = consumer(brokers, QUEUE)
    [d] = take(other, 1)
    assert (d.message_id, d.body, d.headers["trace"]) == (m.message_id, m.body, "kept")
    assert d.redelivered and d.delivery_count >= 1
    other.ack(d)


def test_a_requeued_delivery_comes_back_at_once_on_the_same_consumer(brokers: Brokers) -> None:
    """The engine hands back a batch whose publishes failed while the connection stayed up:
    the consumer, still open, gets it again, marked redelivered and counted."""
    c = consumer(brokers, QUEUE)
    m = msg(trace="again")
    brokers.open().publish([m])
    [d] = take(c, 1)
    c.requeue(d)
    [again] = take(c, 1)
    assert (again.message_id, again.body, again.headers["trace"]) == (m.message_id, m.body, "again")
    assert again.redelivered and again.delivery_count >= 1
    c.ack(again)
    c.close()
    assert drained(consumer(brokers, QUEUE))


def test_dead_letter_moves_the_message_with_its_reason_and_origin(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE)
    dead = consumer(brokers, DEAD_QUEUE)
    m = msg(trace="t1")
    brokers.open().publish([m])
    [d] = take(c, 1)
    c.dead_letter(d, "malformed: not msgpack")
    [dl] = take(dead, 1)
    assert (dl.message_id, dl.body, dl.queue) == (m.message_id, m.body, DEAD_QUEUE)
    assert dl.headers[H_REASON] == "malformed: not msgpack"
    assert dl.headers[H_QUEUE] == QUEUE and dl.headers[H_COUNT] == 0
    assert dl.headers["trace"] == "t1"
    dead.ack(dl)
    c.close()  # a dead-lettered message was settled: nothing comes back
    assert drained(consumer(brokers, QUEUE))


def test_an_unroutable_message_is_refused_not_dropped(brokers: Brokers) -> None:
    if brokers.drop_queue is None:
        pytest.skip(f"{brokers.name}: not modelled: {brokers.unroutable_why}")
    p = brokers.open()
    p.declare([OTHER])
    p.publish([msg(OTHER)])  # routable: the publisher now takes the queue for declared
    brokers.drop_queue(OTHER)
    with pytest.raises(PublishError, match="unroutable"):
        p.publish([msg(OTHER)])
    p.send([msg(OTHER)])
    with pytest.raises(PublishError, match="unroutable"):
        p.confirm()


def test_wakeup_ends_a_poll_from_another_thread(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE)
    assert c.can_wake
    c.poll(0)  # connected and consuming before the poll we interrupt
    returned = threading.Event()
    result: list[list[Delivery]] = []

    def poll_long() -> None:
        result.append(c.poll(PATIENCE_S * 10))
        returned.set()

    t = threading.Thread(target=poll_long, daemon=True)
    t.start()
    c.wakeup()  # once, whether or not the poll is waiting yet: a wakeup is sticky
    assert returned.wait(PATIENCE_S), "wakeup never ended the poll"
    t.join()
    assert result == [[]]


def test_a_wakeup_before_a_poll_ends_that_poll_at_once(brokers: Brokers) -> None:
    """A worker's task that finishes between the loop's last look for results and its poll
    wakes the loop before it waits: that wakeup must end the poll, not be lost (the result
    would wait for the poll's timeout)."""
    c = consumer(brokers, QUEUE)
    c.poll(0)  # connected and consuming
    c.wakeup()
    returned = threading.Event()
    threading.Thread(target=lambda: (c.poll(PATIENCE_S * 10), returned.set()), daemon=True).start()
    try:
        assert returned.wait(PATIENCE_S), "the wakeup before the poll was lost"
    finally:
        c.wakeup()  # end a poll left waiting
    assert returned.wait(PATIENCE_S)


def test_dead_letters_are_listed_shown_replayed_and_purged(brokers: Brokers) -> None:
    c = consumer(brokers, QUEUE)
    ms = [msg(trace=f"t{i}") for i in range(3)]
    brokers.open().publish(ms)
    for i, d in enumerate(take(c, 3)):
        c.dead_letter(d, f"reason {i}")
    ops = brokers.open()
    assert isinstance(ops, DeadLetters)
    listed = ops.list_dead()  # dead_letter returned: the broker confirmed each one
    assert [(dl.id, dl.reason, dl.queue) for dl in listed] == [
        (m.message_id, f"reason {i}", QUEUE) for i, m in enumerate(ms)
    ]
    assert [dl.id for dl in ops.list_dead(limit=2)] == [m.message_id for m in ms[:2]]
    assert [dl.id for dl in ops.list_dead()] == [m.message_id for m in ms], "listing removed letters"
    shown = ops.show_dead(ms[1].message_id)
    assert (shown.body, shown.delivery_count, shown.headers["trace"]) == (ms[1].body, 0, "t1")
    with pytest.raises(DeadLetterNotFound):
        ops.show_dead("no-such-letter")

    replayed = ops.replay_dead(ms[1].message_id)
    assert replayed.id == ms[1].message_id
    [back] = take(c, 1)
    assert (back.message_id, back.body, back.queue, back.headers["trace"]) == (
        ms[1].message_id,
        ms[1].body,
        QUEUE,
        "t1",
    )
    assert not {H_REASON, H_QUEUE, H_COUNT} & set(back.headers), "replayed with the dead-letter headers"
    c.ack(back)
    assert [dl.id for dl in ops.list_dead()] == [ms[0].message_id, ms[2].message_id]
    with pytest.raises(DeadLetterNotFound):
        ops.replay_dead(ms[1].message_id)

    assert ops.purge_dead() == 2
    assert ops.list_dead() == []


# --- RabbitMQ only: where quorum queues' leaders go ----------------------------------------


def _redeclare(cfg: Config, logical: str, arguments: dict[str, object]) -> str | None:
    """Declare a queue with exactly these arguments on a raw channel; None, or the refusal."""
    import amqp

    broker = open_broker(cfg, attempts=1)
    try:
        chan = broker._conn.channel()
        try:
            chan.queue_declare(broker.physical(logical), durable=True, auto_delete=False, arguments=arguments)
        except amqp.exceptions.PreconditionFailed as e:
            return str(e)
        chan.close()
        return None
    finally:
        broker.close()


def test_new_quorum_queues_are_declared_with_a_balanced_leader_locator(config: Config) -> None:
    broker = open_broker(config, role="contract")
    try:
        broker.declare([QUEUE])
    finally:
        broker.close()
    for logical in (ENGINE_QUEUE, QUEUE):
        args = {k: v for k, v in queue_arguments(config, logical).items() if k != "x-queue-leader-locator"}
        # the broker refuses the same queue without it: it is one of the queue's arguments
        refusal = _redeclare(config, logical, args)
        assert refusal is not None and "x-queue-leader-locator" in refusal and "balanced" in refusal


def test_a_queue_declared_before_the_leader_locator_is_used_as_it_is(config: Config) -> None:
    # as an older ackflow declared it: its arguments cannot change, a policy can add the locator
    old = {k: v for k, v in queue_arguments(config, QUEUE).items() if k != "x-queue-leader-locator"}
    assert _redeclare(config, QUEUE, old) is None
    consumer = open_broker(config, role="contract")
    publisher = open_broker(config, role="contract")
    try:
        consumer.consume([QUEUE], prefetch=10)
        publisher.publish([msg(QUEUE)])  # declares the queue again (a queue new to this process)
        got = take(consumer, 1)
        assert [d.queue for d in got] == [QUEUE]
        consumer.ack(got[0])
    finally:
        consumer.close()
        publisher.close()
    # another queue's type is still refused as before
    with pytest.raises(BrokerError, match="exists with other arguments"):
        open_broker(config.with_(queue_type="classic"), attempts=1)


# --- RabbitMQ only: a publish nacked or left unconfirmed ----------------------------------
# The race of a node kill (README: Running on clusters): a publishing channel opened while the
# queue's leader is being elected is nacked forever, and a new channel a moment later is not.
# Modelled on the wire: the channel's incoming basic.ack frames are read as basic.nack (or
# dropped, for a confirm timeout), for one channel or for every channel in confirm mode.


def _stuck(chan: Any, how: str = "nack") -> None:
    """Every confirm of this channel arrives as a nack ("nack") or never ("silent")."""
    from amqp import spec

    chan._callbacks[spec.Basic.Ack] = chan._on_basic_nack if how == "nack" else (lambda *_: None)


def _ids_until(c: Broker, message_id: str) -> set[str]:
    """The ids delivered until ``message_id`` came, and whatever follows at once (acked)."""
    ids: set[str] = set()
    deadline = time.monotonic() + PATIENCE_S
    while message_id not in ids:
        assert time.monotonic() < deadline, f"{message_id} never came"
        for d in c.poll(0.5):
            ids.add(d.message_id or "")
            c.ack(d)
    for d in c.poll(0.3):
        ids.add(d.message_id or "")
        c.ack(d)
    return ids


def _publish_and_receive(cfg: Config, how: str) -> None:
    c = open_broker(cfg, role="contract")
    p = open_broker(cfg, role="contract")
    try:
        c.consume([QUEUE], prefetch=10)
        p.declare([QUEUE])
        p.publish([msg()])  # the connection and its publishing channel are up
        c.ack(take(c, 1)[0])
        _stuck(p._pub, how)
        m = msg(trace="after")
        p.publish([m])  # confirmed on a new channel, on the same connection
        # the stuck channel routed its copy too (a nack says "perhaps not"): ids tell them apart
        assert _ids_until(c, m.message_id) == {m.message_id}
        assert p.connected_host is not None
    finally:
        c.close()
        p.close()


def test_a_nacked_publish_is_sent_again_on_a_new_channel_and_confirmed(config: Config) -> None:
    _publish_and_receive(config, "nack")


def test_an_unconfirmed_publish_is_sent_again_on_a_new_channel_and_confirmed(config: Config) -> None:
    _publish_and_receive(config.with_(confirm_timeout_s=0.5), "silent")


def test_publishes_nacked_on_every_channel_end_in_broker_unavailable_then_recover(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded: after REOPENINGS new channels the publish fails as BrokerUnavailable (the
    caller keeps its messages and tries later), on a fresh channel of the same connection."""
    import amqp

    p = open_broker(config, role="contract")
    try:
        p.declare([QUEUE])
        opened: list[Any] = []
        confirm_select = amqp.Channel.confirm_select

        def nacking(chan: Any, *args: Any, **kwargs: Any) -> Any:
            opened.append(chan)
            _stuck(chan)
            return confirm_select(chan, *args, **kwargs)

        monkeypatch.setattr(amqp.Channel, "confirm_select", nacking)
        _stuck(p._pub)
        with pytest.raises(BrokerUnavailable, match="nacked"):
            p.publish([msg()])
        from runner.broker.kombu import REOPENINGS

        # REOPENINGS new channels re-sending, and one more left for the caller's next try
        assert len(opened) == REOPENINGS + 1
        monkeypatch.setattr(amqp.Channel, "confirm_select", confirm_select)
        conn = p._conn
        # the elected leader: the next try (on that last, still stuck, channel) gets through
        c = consumer(Brokers("kombu", lambda: open_broker(config, role="contract")), QUEUE)
        try:
            m = msg()
            p.publish([m])
            assert m.message_id in _ids_until(c, m.message_id)
        finally:
            c.close()
        assert p._conn is conn  # never a reconnect: the consumers' deliveries stay theirs
    finally:
        p.close()


def test_a_connection_that_fails_under_consume_is_replaced_and_its_consumers_started(config: Config) -> None:
    """An engine starting while the broker restarts: its connection is reset between connect and
    consume. That must not end the process: the next poll reconnects and consumes."""
    import socket

    c = open_broker(config, role="contract", attempts=1)
    p = open_broker(config, role="contract")
    try:
        c._conn.connection.sock.shutdown(socket.SHUT_RDWR)  # the broker went away under it
        c.consume([QUEUE], prefetch=10)  # raises nothing
        p.publish([m := msg()])
        got = take(c, 1)
        assert [d.message_id for d in got] == [m.message_id]
        c.ack(got[0])
    finally:
        c.close()
        p.close()


def test_queue_stats_count_ready_messages_and_consumers(brokers: Brokers) -> None:
    admin = brokers.open()
    assert isinstance(admin, QueueInfo)
    assert admin.queue_stats(OTHER) is None  # never declared
    admin.declare([OTHER])
    admin.publish([msg(OTHER), msg(OTHER)])
    assert admin.queue_stats(OTHER) == QueueStats(ready=2, consumers=0)
    c = consumer(brokers, OTHER, prefetch=1)
    [d] = take(c, 1)  # the other stays ready: one unacknowledged delivery at a time
    assert admin.queue_stats(OTHER) == QueueStats(ready=1, consumers=1)
    c.ack(d)
