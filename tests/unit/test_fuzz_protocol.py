"""Fuzzing the codec: for any bytes, `decode` returns a valid message or raises `DecodeError`.

A decode that raised anything else killed every consumer the message reached (H1); these
properties cover arbitrary msgpack values, arbitrary bytes and valid messages of every kind
with one field dropped, retyped or mutated.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from runner import protocol
from runner.errors import DecodeError
from runner.protocol import Event, Message, TaskRequest
from tests.helpers.wire import FIELDS, keys, scalars, values

pytestmark = pytest.mark.fuzz

# --- maps shaped like messages (arbitrary values come from tests.helpers.wire) ----------------

BODY_FIELDS = sorted(
    {n for kind in protocol._EVENT_BODY.values() for n in kind} | set(protocol._EVENT_OPTIONAL)
)
KINDS = sorted(protocol.EVENT_KINDS) + [protocol.TASK_REQUEST]


def field_maps(names: list[str]) -> st.SearchStrategy[dict[Any, Any]]:
    """Maps whose keys are mostly the protocol's own field names, so decode gets past its
    first checks; values are anything, with the plausible ones likelier."""
    plausible = (
        st.sampled_from(KINDS)
        | st.just(1)
        | st.text(max_size=8)
        | st.dictionaries(st.text(max_size=8), scalars, max_size=3)
    )
    return st.dictionaries(
        st.sampled_from(names) | keys,
        plausible | scalars | st.lists(scalars, max_size=3),
        max_size=len(names) + 2,
    )


message_like = st.builds(
    lambda top, body, kind: {**top, "v": 1, "kind": kind, "body": body},
    field_maps(FIELDS),
    field_maps(BODY_FIELDS),
    st.sampled_from(KINDS) | values,
)


def assert_valid(msg: Message) -> None:
    """Every field has the type its dataclass declares, and the message re-encodes as itself."""
    assert isinstance(msg, (Event, TaskRequest))
    for name in ("id", "run_id", "task"):
        assert isinstance(getattr(msg, name), str)
    assert msg.run_id
    for name in ("attempt", "at_ms"):
        n = getattr(msg, name)
        assert type(n) is int and n >= 0
    if isinstance(msg, Event):
        assert msg.kind in protocol.EVENT_KINDS
        assert isinstance(msg.body, dict) and all(isinstance(k, str) for k in msg.body)
        for name, kind in protocol._EVENT_BODY[msg.kind].items():
            assert isinstance(msg.body[name], kind)
    else:
        assert isinstance(msg.fn, str) and type(msg.unpack) is bool and type(msg.run_created) is int
        assert isinstance(msg.args, dict) and all(isinstance(k, str) for k in msg.args)
        assert isinstance(msg.provides, list) and all(isinstance(p, str) for p in msg.provides)
        assert msg.mode in (protocol.MODE_RUN, protocol.MODE_REVERT)
    again = protocol.encode(msg)
    assert protocol.encode(protocol.decode(again)) == again


def decodes_or_refuses(data: bytes) -> None:
    try:
        msg = protocol.decode(data)
    except DecodeError as e:
        assert e.reason and len(e.reason) < 1_000
        event("refused")
        return
    event("decoded")
    assert_valid(msg)


@given(values)
def test_any_msgpack_value_decodes_or_is_refused(value: Any) -> None:
    decodes_or_refuses(msgpack.packb(value))


@given(message_like)
def test_any_message_shaped_map_decodes_or_is_refused(value: dict[Any, Any]) -> None:
    decodes_or_refuses(msgpack.packb(value))


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)


# --- valid messages, one field changed -------------------------------------------------------

names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
run_ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,20}", fullmatch=True)
counts = st.integers(min_value=0, max_value=2**63 - 1)


def body_value(kind: type | tuple[type, ...]) -> st.SearchStrategy[Any]:
    if kind is dict:
        return st.dictionaries(names, values, max_size=3)
    if kind is int:
        return counts
    if kind == protocol._NUMBER:
        return st.floats(min_value=0, allow_nan=False, allow_infinity=False) | counts
    return names


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(sorted(protocol.EVENT_KINDS)))
    body = {n: draw(body_value(t)) for n, t in protocol._EVENT_BODY[kind].items()}
    for n, t in protocol._EVENT_OPTIONAL.items():
        if n not in body and draw(st.booleans()):
            body[n] = draw(body_value(t))
    return Event(
        kind, draw(names), draw(run_ids), draw(st.text(max_size=8)), draw(counts), body, draw(counts)
    )


requests = st.builds(
    TaskRequest,
    id=names,
    run_id=run_ids,
    task=names,
    fn=names,
    attempt=counts,
    args=st.dictionaries(names, values, max_size=3),
    provides=st.lists(names, max_size=3),
    unpack=st.booleans(),
    at_ms=counts,
    mode=st.sampled_from([protocol.MODE_RUN, protocol.MODE_REVERT]),
    result=values,
    run_created=counts,
)
messages = events() | requests


@given(messages)
def test_valid_messages_of_every_kind_round_trip(msg: Message) -> None:
    got = protocol.decode(protocol.encode(msg))
    assert_valid(got)
    assert protocol.encode(got) == protocol.encode(msg)
    if not _has_nan(msg):
        assert got == msg


def _has_nan(msg: Message) -> bool:
    return "nan" in repr(msg)  # NaN != NaN: equality cannot hold, the bytes do (above)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message's map with one field (top level or in the body) dropped, retyped or
    replaced by anything at all."""
    raw = protocol.unpack(protocol.encode(draw(messages)))
    target = raw
    if "body" in raw and draw(st.booleans()):
        target = raw["body"]
    name = draw(st.sampled_from(sorted(target)) | st.sampled_from(FIELDS + BODY_FIELDS))
    how = draw(st.sampled_from(["drop", "retype", "any"]))
    if how == "drop":
        target.pop(name, None)
    elif how == "retype":
        target[name] = draw(
            st.sampled_from(
                [None, True, -1, 2**64 - 1, 1.5, math.nan, "", b"x", [], {}, [1, 2], {"a": 1}, {1: 2}]
            )
        )
    else:
        target[name] = draw(values)
    return msgpack.packb(raw)


@given(mutated())
def test_a_valid_message_with_one_field_changed_decodes_or_is_refused(data: bytes) -> None:
    decodes_or_refuses(data)
