"""What py-amqp reads off the wire, made total for text a publisher chose.

py-amqp decodes a message's short-string properties (message id, content type, ...) and the
keys and long-string values of its header table as UTF-8 while it parses the frames
(`amqp.serialization.pstr_t`). Bytes that are not UTF-8 — any publisher may send them —
raised `UnicodeDecodeError` from inside the client library in the middle of a delivery: the
engine or worker that received the message died, and so did each one it went to next (H1).

Importing this module makes that decoding total: UTF-8 as before, and what is not UTF-8
keeps its bytes as lone surrogates (``surrogateescape``). The message then reaches ackflow,
which refuses it like any other malformed message (dead letter with a reason).
"""

from __future__ import annotations

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


amqp.serialization.pstr_t = text_of
