"""Holding sends back to write them to the socket at once (`KombuBroker.corked`).

py-amqp writes each published message to the socket on its own (one ``sendall`` per
message); an engine that sends the requests of a batch of events one by one pays one system
call per message. Within ``corked``, the frames that `KombuBroker.send` produces are appended to
a buffer instead, and written in one call when the broker next waits for the broker (its
`confirm`) or at the end of the block. Only `send`'s own writes are held: heartbeats, acks and
every request that awaits a reply go out as before, so nothing waits on a held write. A
message's frames are written together, so held messages never interleave with other frames.

Held messages are not confirmed, exactly like sent ones that the broker has not confirmed:
they stay in their run's outbox until a confirm covers them. A connection lost meanwhile takes
the held bytes with it (they are dropped, not written to the next connection).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Cork:
    """The held writes of one connection's transport."""

    def __init__(self) -> None:
        self.on = False  # inside `KombuBroker.corked`
        self._transport: Any = None
        self._held: list[bytes] = []

    @contextmanager
    def holding(self, transport: Any) -> Iterator[None]:
        """Hold what ``transport`` is asked to write during the block (when corked)."""
        if not self.on:
            yield
            return
        if transport is not self._transport:
            self._transport, self._held = transport, []  # a new connection: nothing carries over
        own = transport.__dict__.get("_write")  # TCP: the socket's sendall; TLS: the class's
        held = self._held
        # a copy: py-amqp writes views of one frame buffer that it reuses for the next message
        transport._write = lambda data: held.append(bytes(data))
        try:
            yield
        finally:
            if own is None:
                del transport._write
            else:
                transport._write = own

    def flush(self, transport: Any) -> None:
        """Write what is held, if it is for ``transport`` (raises the transport's errors)."""
        held, self._held = self._held, []
        if held and transport is self._transport and transport is not None:
            transport.write(b"".join(held))
