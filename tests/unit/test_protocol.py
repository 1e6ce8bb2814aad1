"""The msgpack codec: round trips, and a clear reason for every kind of bad input."""

from __future__ import annotations

import msgpack
import pytest

from runner import protocol
from runner.errors import DecodeError, EncodeError
from runner.protocol import Event, TaskRequest


def test_event_round_trip() -> None:
    e = Event(
        protocol.TASK_SUCCEEDED,
        "result:r:t:1",
        "r",
        "t",
        1,
        {"values": {"x": [1, "two", b"3", None]}, "worker": "w"},
        123,
    )
    assert protocol.decode(protocol.encode(e)) == e


def test_request_round_trip_and_key() -> None:
    r = TaskRequest("req:r:t:2", "r", "t", "fn", 2, {"a": {"nested": 1.5}}, ["out"], False, 5)
    assert protocol.decode(protocol.encode(r)) == r
    assert r.idempotency_key == ("r", "t", 2)


def test_ids_are_deterministic() -> None:
    assert protocol.result_id("r", "t", 3) == "result:r:t:3"
    assert protocol.submit_id("r") == "submit:r"


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"\xc1garbage", "not msgpack"),
        (b"", "not msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"v": 99, "kind": "run.submit"}), "schema version"),
        (msgpack.packb({"v": 1, "kind": "launch.missiles"}), "unknown message kind"),
        (
            msgpack.packb(
                {
                    "v": 1,
                    "kind": "task.succeeded",
                    "id": "x",
                    "run": "r",
                    "task": "t",
                    "attempt": 1,
                    "at": 0,
                    "body": {"worker": "w"},
                }
            ),
            "missing field 'values'",
        ),
        (
            msgpack.packb(
                {
                    "v": 1,
                    "kind": "task.started",
                    "id": "x",
                    "run": "r",
                    "task": "t",
                    "attempt": "one",
                    "at": 0,
                    "body": {"worker": "w"},
                }
            ),
            "'attempt' has type str",
        ),
        (msgpack.packb({"v": 1, "kind": "task.request", "id": "x"}), "missing field"),
        (
            msgpack.packb(
                {
                    "v": 1,
                    "kind": "task.started",
                    "id": "x",
                    "run": "",
                    "task": "t",
                    "attempt": 1,
                    "at": 0,
                    "body": {"worker": "w"},
                }
            ),
            "'run' is empty",
        ),
    ],
)
def test_bad_input_is_one_decode_error_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        protocol.decode(body)
    assert reason in e.value.reason


def test_unencodable_value() -> None:
    with pytest.raises(EncodeError, match="cannot encode"):
        protocol.pack({"x": object()})


def test_bool_is_not_an_int() -> None:
    raw = msgpack.packb(
        {
            "v": 1,
            "kind": "task.started",
            "id": "x",
            "run": "r",
            "task": "t",
            "attempt": True,
            "at": 0,
            "body": {"worker": "w"},
        }
    )
    with pytest.raises(DecodeError):
        protocol.decode(raw)
