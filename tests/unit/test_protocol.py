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


def _request(**fields: object) -> bytes:
    base: dict[str, object] = {
        "v": 1,
        "kind": "task.request",
        "id": "i",
        "run": "r",
        "task": "t",
        "fn": "echo",
        "attempt": 1,
        "args": {},
        "provides": [],
        "at": 0,
    }
    base.update(fields)
    return msgpack.packb(base)


def _succeeded(**body: object) -> bytes:
    return msgpack.packb(
        {
            "v": 1,
            "kind": "task.succeeded",
            "id": "x",
            "run": "r",
            "task": "t",
            "attempt": 1,
            "at": 0,
            "body": {"values": {}, "worker": "w", **body},
        }
    )


# Bodies that once raised TypeError/ValueError out of decode and killed every consumer (H1),
# and wrong types that decode once passed on (a str duration rendered raw, L4).
WRONG_TYPES = [
    (msgpack.packb({"v": 1, "kind": [1, 2]}), "field 'kind' has type list"),
    (msgpack.packb({"v": 1, "kind": {"a": 1}}), "field 'kind' has type dict"),
    (msgpack.packb({"v": 1}), "missing field 'kind'"),
    (_request(created="abc"), "field 'created' has type str"),
    (_request(created=[1]), "field 'created' has type list"),
    (_request(created=1.5), "field 'created' has type float"),
    (_request(unpack="yes"), "field 'unpack' has type str"),
    (_request(timeout="5"), "field 'timeout' has type str"),
    (_request(timeout=-1.0), "field 'timeout' is negative"),
    (_request(timeout=True), "field 'timeout' has type bool"),
    (_request(mode=[1]), "field 'mode' has type list"),
    (_request(mode="sideways"), "unknown request mode 'sideways'"),
    (_request(args={1: "a"}), "field 'args' must map strings"),
    (_request(attempt=-1), "field 'attempt' is negative"),
    (_request(run=""), "field 'run' is empty"),
    (msgpack.packb({"v": True, "kind": "task.request"}), "unsupported schema version"),
    (msgpack.packb({"v": 1.0, "kind": "task.request"}), "unsupported schema version"),
    (_succeeded(ms="<img src=x onerror=alert(1)>"), "field 'ms' has type str"),
    (_succeeded(values={1: 2}), "field 'values' must map strings"),
    (msgpack.packb({"v": 1, "kind": "x" * 100_000}), "unknown message kind 'xxxx"),
]


@pytest.mark.parametrize("body,reason", WRONG_TYPES, ids=[r for _, r in WRONG_TYPES])
def test_wrong_types_anywhere_are_one_decode_error(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        protocol.decode(body)
    assert reason in e.value.reason
    assert len(e.value.reason) < 300  # it travels in a message header to the dead-letter queue


def test_an_unexpected_failure_inside_decode_is_still_a_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resort: a bug in validation must not escape as another exception type."""

    def broken(value: object) -> object:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(protocol, "_event", broken)
    with pytest.raises(DecodeError) as e:
        protocol.decode(_succeeded())
    assert "ZeroDivisionError: bug" in e.value.reason
    assert isinstance(e.value.__cause__, ZeroDivisionError)


def test_optional_fields_round_trip() -> None:
    r = TaskRequest(
        "req:r:t:2",
        "r",
        "t",
        "fn",
        2,
        {"a": 1},
        ["x", "y"],
        True,
        5,
        protocol.MODE_REVERT,
        [1, 2],
        77,
        failure={"type": "E", "message": "m"},
        timeout_s=2.5,
    )
    assert protocol.decode(protocol.encode(r)) == r
    old = _request()  # written before 'unpack', 'mode', 'result', 'created', 'timeout' were sent
    got = protocol.decode(old)
    assert isinstance(got, TaskRequest)
    assert (got.unpack, got.mode, got.result, got.run_created, got.timeout_s) == (
        False,
        protocol.MODE_RUN,
        None,
        0,
        0.0,
    )
    whole = protocol.decode(_request(timeout=3))  # an int is a number of seconds too
    assert isinstance(whole, TaskRequest) and whole.timeout_s == 3.0 and type(whole.timeout_s) is float
