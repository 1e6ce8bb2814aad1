"""Serving an ASGI app (`runner.ops.http.api`) on uvicorn with h11: in the foreground for
``ackflow serve``, or in a background thread for local mode.

uvicorn frames requests correctly (Content-Length and chunked bodies through h11, so an unread
body is never parsed as the next request), writes asynchronously (a client that does not read
holds no thread) and answers 503 beyond ``max_connections``. What it lacks is added here:

- a request deadline: a client gets ``request_timeout_s`` from its connection (or its previous
  answer) to send a whole request, head and body, else 408 and the connection is closed —
  half-sent requests (slow loris) hold a socket for that long at most;
- a write deadline: a client that stops reading for ``write_timeout_s`` while an answer is
  being sent is disconnected, so slow readers do not hold memory forever.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD = 64 * 1024
LINGER_S = 2.0
_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Lingering:
    """The connection's transport, closing gracefully: on close, the answer already written is
    sent, then the write side shut, and what the client still sends is read and dropped for up
    to `LINGER_S` before the socket closes. Hazard: closing a socket with unread input makes
    the kernel send a reset, and a client still sending its body (refused before it was read:
    400, 413, 411) would then lose the answer it was sent."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        self.lingering = True
        try:
            if self._transport.can_write_eof():
                self._transport.write_eof()  # after the buffered answer
            self._transport.resume_reading()
        except (OSError, RuntimeError):
            self._transport.close()
            return
        self._loop.call_later(LINGER_S, self._transport.close)


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and a write deadline (see the module)."""

    request_timeout_s = 30.0
    write_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMEOUT_408)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _Lingering(transport, self.loop)))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # answered and closing: what still comes is dropped (see _Lingering)
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the request is in: the app may take its time (completions wait)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is not h11.DONE:
            self._arm()  # the next request's clock (a pipelined one may already be in)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.write_timeout_s, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The CLI installs its own SIGTERM/SIGINT handlers (graceful stop, exit 0); uvicorn's
        # would re-raise the signal after stopping and end the process with it.
        yield


class HttpServer:
    """One listening socket served by uvicorn; `serve_forever` (foreground) or `start`."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        max_connections: int,
        request_timeout_s: float,
        write_timeout_s: float,
        keep_alive_s: float = 5.0,
    ) -> None:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self.socket = socket.create_server((host.strip("[]"), port), family=family, backlog=256)
        protocol = type(
            "Protocol",
            (_Protocol,),
            {"request_timeout_s": request_timeout_s, "write_timeout_s": write_timeout_s},
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            loop="asyncio",
            lifespan="off",
            access_log=False,  # runner.ops.http.api logs each request itself, escaped
            log_config=None,  # the process's logging (runner.logs) stays as configured
            limit_concurrency=max_connections,
            timeout_keep_alive=int(max(1, keep_alive_s)),
            timeout_graceful_shutdown=5,
            server_header=False,
            h11_max_incomplete_event_size=MAX_HEAD,  # request line and headers; beyond: 400
        )
        self._server = _Server(config)
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until `shutdown` (in-flight answers are finished first)."""
        self._serving.set()
        try:
            if not self._server.should_exit:
                self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def start(self) -> HttpServer:
        """Serve in a background thread."""
        threading.Thread(target=self.serve_forever, name="ackflow-http", daemon=True).start()
        self._serving.wait(10)
        return self

    def shutdown(self) -> None:
        """Stop serving, from any thread; returns once `serve_forever` has (the socket may
        then be closed)."""
        self._server.should_exit = True
        if self._serving.is_set():
            self._stopped.wait(15)

    def server_close(self) -> None:
        self.socket.close()
