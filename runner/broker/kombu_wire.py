"""What py-amqp reads off the wire, made total for text a publisher chose.

py-amqp decodes a message's short-string properties (message id, content type, ...) as UTF-8
while it parses the frames (`amqp.serialization.pstr_t`). Bytes that are not UTF-8 — any publisher may send them —
raised `UnicodeDecodeError` from inside the client library in the middle of a delivery: the
engine or worker that received the message died, and so did each one it went to next (H1).

The same for a header timestamp (AMQP field type 'T', 64 bits, turned into a `datetime`):
one past datetime's range (year 9999) raised `OverflowError` there.

Importing this module makes both total: UTF-8 as before, and what is not UTF-8 keeps its
bytes as lone surrogates (``surrogateescape``); a timestamp out of range reads as
`datetime.max` (ackflow reads no header timestamp). The message then reaches ackflow, which
handles it like any other (a malformed one is dead-lettered with a reason).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import amqp.serialization


def text_of(raw: Any) -> Any:
    """py-amqp's `bytes_to_str`, except that bytes that are not UTF-8 do not raise."""
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8", "surrogatepass")  # what py-amqp does
        except UnicodeDecodeError:
            return raw.decode("utf-8", "surrogateescape")
    return raw


_upstream_read_item = amqp.serialization._read_item


def read_item(buf: Any, offset: int) -> tuple[Any, int]:
    """py-amqp's reading of one header value, except that a timestamp ('T') out of datetime's
    range reads as `datetime.max` (naive UTC, as py-amqp gives the others) instead of raising.
    Nested tables and arrays come back here: py-amqp looks the function up by name."""
    if chr(buf[offset]) != "T":
        return _upstream_read_item(buf, offset)  # type: ignore[no-any-return]
    (seconds,) = struct.unpack_from(">Q", buf, offset + 1)
    try:
        value = datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        value = datetime.max
    return value, offset + 9


amqp.serialization.pstr_t = text_of
amqp.serialization._read_item = read_item
