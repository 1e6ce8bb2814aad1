"""Fuzzing what ackflow reads from AMQP headers (H1, one layer below the body): whatever
headers a publisher sets — RabbitMQ passes them through, ``x-delivery-count`` and ``x-death``
included — the adapter makes a delivery of the message, dead letters read as such, and the
engine's reading of a dead-letter copy returns an event or nothing. Never an exception: a
consumer that raised would die on the message, and so would every one it went to next."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import protocol
from runner.broker import DEAD_WATCH_QUEUE, H_COUNT, H_QUEUE, H_REASON, Delivery, from_headers
from runner.broker.kombu import KombuBroker
from runner.config import Config
from runner.engine import dead_requests
from tests.helpers.wire import REQUEST, with_header_timestamp

pytestmark = pytest.mark.fuzz

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
NAMES = st.sampled_from(
    ["x-delivery-count", "x-death", "x-first-death-queue", H_REASON, H_QUEUE, H_COUNT]
) | st.text(max_size=8)
DEATH = st.fixed_dictionaries(
    {},
    optional={
        "queue": st.sampled_from(["ackflow.task.default", "ackflow.engine"]) | VALUES,
        "reason": VALUES,
        "count": VALUES,
    },
)
HEADERS = st.dictionaries(NAMES, VALUES, max_size=5) | st.fixed_dictionaries(
    {"x-death": st.lists(DEATH | VALUES, max_size=2)}, optional={"x-delivery-count": VALUES}
)
BODIES = st.binary(max_size=40) | st.just(protocol.pack(REQUEST))
BROKER = KombuBroker(Config())  # not connected: only its conversion of a received message


class _Received:
    """What kombu hands the adapter's callback."""

    def __init__(self, body: bytes, headers: dict[str, Any]) -> None:
        self.body = body
        self.properties = {"application_headers": headers, "content_type": protocol.CONTENT_TYPE}
        self.delivery_info = {"delivery_tag": 1, "redelivered": False, "consumer_tag": "t"}


@given(headers=HEADERS, body=BODIES)
def test_any_headers_make_a_delivery(headers: dict[str, Any], body: bytes) -> None:
    d = BROKER._to_delivery(_Received(body, headers), "engine")
    assert isinstance(d.delivery_count, int) and d.delivery_count >= 0


@given(headers=HEADERS, body=BODIES)
def test_any_dead_letter_headers_are_read_or_ignored(headers: dict[str, Any], body: bytes) -> None:
    dl = from_headers("m", body, headers, "ackflow.")
    assert isinstance(dl.reason, str) and isinstance(dl.queue, str) and dl.delivery_count >= 0
    copy = Delivery(body, DEAD_WATCH_QUEUE, protocol.CONTENT_TYPE, "m", False, 0, headers)
    ev = dead_requests.failure_of(copy, "ackflow")
    assert ev is None or ev.kind in (protocol.TASK_FAILED, protocol.TASK_REVERT_FAILED)


SHORT = st.binary(max_size=20) | st.text(max_size=10)


@given(
    message_id=SHORT,
    content_type=SHORT,
    headers=st.dictionaries(st.text(max_size=6), st.binary(max_size=8) | st.text(max_size=8), max_size=3),
)
def test_any_bytes_in_properties_and_headers_are_read_off_the_wire(
    message_id: bytes | str, content_type: bytes | str, headers: dict[str, Any]
) -> None:
    """py-amqp decodes short strings and header texts as UTF-8 while it parses a frame: bytes
    that are not UTF-8 once raised inside the client library (the consumer died);
    `runner.broker.kombu_wire` keeps them as lone surrogates instead."""
    import amqp.basic_message
    import amqp.serialization

    sent = amqp.basic_message.Message(
        b"", message_id=message_id, content_type=content_type, application_headers=headers
    )
    props, _ = amqp.serialization.decode_properties_basic(sent._serialize_properties(), 0)
    raw = message_id.encode("utf-8", "surrogatepass") if isinstance(message_id, str) else message_id
    if raw:
        assert (
            props["message_id"].encode("utf-8", "surrogateescape") == raw or props["message_id"] == message_id
        )


@given(seconds=st.integers(0, 2**64 - 1))
def test_any_header_timestamp_is_read_off_the_wire(seconds: int) -> None:
    """A timestamp past datetime's range once raised inside py-amqp's frame parsing."""
    import amqp.serialization

    props, _ = amqp.serialization.decode_properties_basic(with_header_timestamp(seconds), 0)
    assert "t" in props["application_headers"]
