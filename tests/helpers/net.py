"""Ports for servers a test starts, and a relay that stands in for a service that comes and goes."""

from __future__ import annotations

import socket
import threading


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a racing process could take it
    before the caller binds, which on a test machine does not happen in practice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Forwarder:
    """Relays connections on 127.0.0.1:``port`` to ``target``, once started."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.port = free_port()
        self.target = target
        self._server: socket.socket | None = None
        self._socks: list[socket.socket] = []

    def start(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Drop every relayed connection and refuse new ones, at once. Each socket is shut down
        before it is closed: a close alone, while another thread blocks in its accept or recv,
        leaves it listening (one more connection gets through) or its peer unaware."""
        for s in [*([self._server] if self._server is not None else []), *self._socks]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._server, self._socks = None, []
