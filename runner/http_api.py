"""``ackflow serve``: the HTTP endpoint outside systems call to complete lazy tasks.

    POST /v1/complete   {"result": ...}                      complete the task the token names
    POST /v1/fail       {"error": "message", "type": "..."}  fail it (its retry policy applies)
    GET  /healthz

The completion token is the credential: ``Authorization: Bearer <token>`` (or a ``"token"``
field in the JSON body). ``?wait=S`` (default 10, at most 60) is how long to wait for an
engine to apply the completion. Answers, always JSON:

    200 {"status": "completed" | "failed", "run_id", "task"}
    202 {"status": "accepted"}           sent, not yet applied by an engine
    400 malformed JSON, or a result that does not fit the task
    401 no token                         403 invalid (forged, altered, foreign) token
    404 no such run                      409 already completed, or the run is finished/cancelled
    413 body too large                   503 RabbitMQ or Redis unavailable

Standard library only (no framework to install). Tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runner.client import Client
from runner.errors import (
    AlreadyCompleted,
    BrokerUnavailable,
    CompletionRefused,
    PayloadTooLargeError,
    RunNotFound,
    StoreUnavailable,
)
from runner.tokens import InvalidToken

log = logging.getLogger("ackflow.http")
MAX_WAIT_S = 60.0


class ClientPool:
    """Clients are not thread-safe; request threads borrow one each."""

    def __init__(self, factory: Callable[[], Client], size: int = 8) -> None:
        self._factory = factory
        self._free: queue.LifoQueue[Client] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def client(self) -> Iterator[Client]:
        with self._slots:
            try:
                c = self._free.get_nowait()
            except queue.Empty:
                c = self._factory()
                with self._lock:
                    self._all.append(c)
            try:
                yield c
            finally:
                self._free.put(c)

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()


class _Handler(BaseHTTPRequestHandler):
    server: CompletionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.info("%s %s", self.address_string(), format % args)  # request line only: no headers

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if urlsplit(self.path).path == "/healthz":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": f"no such endpoint: GET {urlsplit(self.path).path}"})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        if url.path not in ("/v1/complete", "/v1/fail"):
            self._send(404, {"error": f"no such endpoint: POST {url.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_body:
            self._send(413, {"error": f"body of {length} bytes is over the limit of {self.server.max_body}"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            self._send(400, {"error": f"malformed JSON: {e}"})
            return
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else body.get("token")
        if not token:
            self._send(401, {"error": "no completion token (send Authorization: Bearer <token>)"})
            return
        try:
            wait_s = min(float(parse_qs(url.query).get("wait", ["10"])[0]), MAX_WAIT_S)
        except ValueError:
            self._send(400, {"error": "wait must be a number of seconds"})
            return
        self._complete(url.path == "/v1/fail", str(token), body, wait_s)

    def _complete(self, fail: bool, token: str, body: dict[str, Any], wait_s: float) -> None:
        try:
            with self.server.pool.client() as client:
                if fail:
                    if not isinstance(body.get("error"), str) or not body["error"]:
                        self._send(400, {"error": 'a failure needs "error": "<message>"'})
                        return
                    status = client.fail(
                        token,
                        body["error"],
                        error_type=str(body.get("type") or "ExternalError"),
                        wait_s=wait_s,
                    )
                else:
                    if "result" not in body:
                        self._send(
                            400, {"error": 'a completion needs "result" (null for a task providing nothing)'}
                        )
                        return
                    status = client.complete(token, body["result"], wait_s=wait_s)
                run_id, task = client_token_scope(client, token)
        except InvalidToken as e:
            self._send(403, {"error": str(e)})
        except RunNotFound as e:
            self._send(404, {"error": str(e)})
        except AlreadyCompleted as e:
            self._send(409, {"error": str(e), "status": "already completed"})
        except CompletionRefused as e:
            self._send(409, {"error": str(e)})
        except PayloadTooLargeError as e:
            self._send(413, {"error": str(e)})
        except ValueError as e:
            self._send(400, {"error": str(e)})
        except (BrokerUnavailable, StoreUnavailable) as e:
            self._send(503, {"error": str(e)})
        else:
            self._send(
                202 if status == "accepted" else 200, {"status": status, "run_id": run_id, "task": task}
            )


def client_token_scope(client: Client, token: str) -> tuple[str, str]:
    from runner.tokens import parse_token

    return parse_token(client.config.secret, client.config.prefix, token)


class CompletionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pool: ClientPool, max_body: int) -> None:
        super().__init__(address, _Handler)
        self.pool = pool
        self.max_body = max_body

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def make_server(host: str, port: int, factory: Callable[[], Client], max_body: int) -> CompletionServer:
    return CompletionServer((host, port), ClientPool(factory), max_body)
