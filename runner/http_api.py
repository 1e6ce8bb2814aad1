"""``ackflow serve``: the dashboard, and the HTTP endpoint outside systems call to complete
lazy tasks.

Dashboard (HTML): ``/runs`` (filters, counts, pages), ``/runs/<id>`` (DAG, tasks, history,
control), ``/dlq`` (dead letters). Read-only unless an operator token is configured
(``ACKFLOW_OPERATOR_TOKEN``); an operator logs in with it (a SameSite=Strict, HttpOnly
cookie holds its hash) to pause, resume, cancel, retry, replay and purge.

Completion API (JSON):

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

import hmac
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import escape
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from runner.client import Client
from runner.errors import (
    AckflowError,
    AlreadyCompleted,
    BrokerUnavailable,
    CompletionRefused,
    PayloadTooLargeError,
    RunNotFound,
    StoreUnavailable,
)
from runner.tokens import InvalidToken, parse_token

log = logging.getLogger("ackflow.http")
MAX_WAIT_S = 60.0


class ClientPool:
    """Clients are not thread-safe; request threads borrow one each."""

    def __init__(self, factory: Callable[[], Client], size: int = 8) -> None:
        self.factory = factory
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
                c = self.factory()
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


COOKIE = "ackflow_op"
SESSION_S = 8 * 3600
STATIC = Path(__file__).resolve().parent / "dashboard" / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class _Handler(BaseHTTPRequestHandler):
    server: CompletionServer
    protocol_version = "HTTP/1.1"

    # --- plumbing ----------------------------------------------------------------------

    def _raw(self, code: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _html(self, code: int, body: str, title: str, flash: str = "", refresh: bool = False) -> None:
        from runner.dashboard.pages import layout

        page = layout(title, body, self._operator(), bool(self.server.operator_token), flash, refresh)
        self._raw(code, page.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def _redirect(self, where: str, cookie: str | None = None) -> None:
        headers = {"Location": where}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        self._raw(303, b"", "text/plain", headers)

    def _session(self) -> str:
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return ""
        return jar[COOKIE].value if COOKIE in jar else ""

    def _operator(self) -> bool:
        return bool(self.server.operator_token) and self.server.sessions.valid(self._session())

    def _length(self, limit: int) -> int | None:
        """The request body's length, or None (after answering 400/413) if unusable."""
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit():
            self._send(400, {"error": "Content-Length must be a non-negative integer"})
            return None
        length = int(raw)
        if length > limit:
            self._send(413, {"error": f"body of {length} bytes is over the limit of {limit}"})
            return None
        return length

    def _form(self) -> dict[str, str] | None:
        length = self._length(64_000)
        if length is None:
            return None
        return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(errors="replace")).items()}

    def _cross_site(self) -> bool:
        """A browser's request from another site (CSRF): refused for every POST of the dashboard."""
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return True
        origin = self.headers.get("Origin")
        return origin is not None and urlsplit(origin).netloc != self.headers.get("Host", "")

    # --- dashboard ---------------------------------------------------------------------

    def _dashboard_get(self, path: str, query: dict[str, str]) -> None:
        from runner.dashboard import pages
        from runner.errors import RunNotFound as NotFound

        if path.startswith("/static/"):
            f = STATIC / path.removeprefix("/static/")
            if f.parent != STATIC or not f.is_file():
                self._raw(404, b"not found", "text/plain")
                return
            self._raw(200, f.read_bytes(), _STATIC_TYPES.get(f.suffix, "application/octet-stream"))
            return
        flash = query.get("msg", "")
        with self.server.pages.client() as client:
            if path in ("/", "/runs"):
                try:
                    body = pages.runs_page(client, query)
                except ValueError as e:
                    self._html(400, f"<h1>Bad filter</h1><p>{escape(str(e))}</p>", "Bad filter")
                    return
                self._html(200, body, "Runs", flash)
            elif path.startswith("/runs/"):
                run_id = path.removeprefix("/runs/")
                try:
                    body, info = pages.run_page(client, run_id, self._operator())
                except NotFound:
                    self._html(404, pages.not_found(run_id), "No such run")
                    return
                self._html(200, body, f"Run {run_id}", flash, refresh=not info.done)
            elif path == "/dlq":
                self._html(200, pages.dlq_page(client, self._operator()), "Dead letters", flash)
            else:
                self._html(404, "<h1>Not found</h1>", "Not found")

    def _dashboard_post(self, path: str) -> None:
        from runner import dlq
        from runner.dashboard.pages import ACTIONS
        from runner.kombu_broker import KombuBroker

        if self._cross_site():
            self._html(403, "<h1>Refused</h1><p>A request from another site.</p>", "Forbidden")
            return
        form = self._form()
        if form is None:
            return
        if path == "/login":
            want = self.server.operator_token
            if want and hmac.compare_digest(form.get("token", "").encode(), want.encode()):
                session = self.server.sessions.open()
                cookie = f"{COOKIE}={session}; Path=/; Max-Age={SESSION_S}; HttpOnly; SameSite=Strict"
                self._redirect("/runs?msg=logged+in", cookie)
            else:
                self._redirect("/runs?msg=wrong+operator+token")
            return
        if path == "/logout":
            self.server.sessions.close(self._session())
            self._redirect("/runs?msg=logged+out", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            return
        if not self._operator():
            self._html(403, "<h1>Operators only</h1><p>Log in with the operator token.</p>", "Forbidden")
            return
        parts = path.strip("/").split("/")
        with self.server.pages.client() as client:
            try:
                if len(parts) == 3 and parts[0] == "runs" and parts[2] in ACTIONS:
                    run_id, action = parts[1], parts[2]
                    status = getattr(client, action)(run_id, "from the dashboard", wait_s=10.0)
                    self._redirect(
                        f"/runs/{quote(run_id)}?{urlencode({'msg': f'{action}: run is {status}'})}"
                    )
                elif parts[0] == "dlq" and not isinstance(client.broker, KombuBroker):
                    self._redirect("/dlq?msg=local+mode+has+no+dead-letter+queue")
                elif len(parts) == 3 and parts[0] == "dlq" and parts[2] == "replay":
                    dl = dlq.replay(cast(KombuBroker, client.broker), parts[1])
                    self._redirect(f"/dlq?{urlencode({'msg': f'replayed {dl.id} to {dl.queue}'})}")
                elif parts == ["dlq", "purge"]:
                    n = dlq.purge(cast(KombuBroker, client.broker))
                    self._redirect(f"/dlq?{urlencode({'msg': f'purged {n} dead letters'})}")
                else:
                    self._html(404, "<h1>Not found</h1>", "Not found")
            except AckflowError as e:
                back = f"/runs/{quote(parts[1])}" if parts[0] == "runs" and len(parts) > 1 else "/dlq"
                self._redirect(f"{back}?{urlencode({'msg': f'refused: {e}'})}")

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
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, {"ok": True})
            return
        try:
            self._dashboard_get(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
        except (BrokerUnavailable, StoreUnavailable) as e:
            self._raw(503, str(e).encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        if url.path not in ("/v1/complete", "/v1/fail"):
            try:
                self._dashboard_post(url.path)
            except (BrokerUnavailable, StoreUnavailable) as e:
                self._raw(503, str(e).encode(), "text/plain; charset=utf-8")
            return
        if not self.server.completions:
            self._send(503, {"error": "this server completes no lazy tasks: ACKFLOW_SECRET is not set"})
            return
        length = self._length(self.server.max_body)
        if length is None:
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except (ValueError, RecursionError) as e:
            self._send(400, {"error": f"malformed JSON: {type(e).__name__}: {str(e)[:200]}"})
            return
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else body.get("token")
        if not token:
            self._send(401, {"error": "no completion token (send Authorization: Bearer <token>)"})
            return
        try:
            wait_s = float(parse_qs(url.query).get("wait", ["10"])[0])
            if not 0 <= wait_s <= MAX_WAIT_S:  # also refuses nan
                raise ValueError
        except ValueError:
            self._send(400, {"error": f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}"})
            return
        self._complete(url.path == "/v1/fail", str(token), body, wait_s)

    def _complete(self, fail: bool, token: str, body: dict[str, Any], wait_s: float) -> None:
        try:
            with self.server.pool.client() as client:  # the completions' own pool
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
                run_id, task = parse_token(token)
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


class Sessions:
    """Operators' sessions: random ids, kept in this process, expiring; logout ends one."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def open(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[sid] = now + SESSION_S
        return sid

    def valid(self, sid: str) -> bool:
        with self._lock:
            return bool(sid) and self._until.get(sid, 0.0) > time.monotonic()

    def close(self, sid: str) -> None:
        with self._lock:
            self._until.pop(sid, None)


class CompletionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        pool: ClientPool,
        max_body: int,
        operator_token: str = "",
        completions: bool = True,
    ) -> None:
        super().__init__(address, _Handler)
        self.pool = pool  # completions
        self.pages = ClientPool(pool.factory)  # the dashboard: slow completions never starve it
        self.sessions = Sessions()
        self.max_body = max_body
        self.operator_token = operator_token
        self.completions = completions

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def make_server(
    host: str,
    port: int,
    factory: Callable[[], Client],
    max_body: int,
    operator_token: str = "",
    completions: bool = True,
) -> CompletionServer:
    return CompletionServer((host, port), ClientPool(factory), max_body, operator_token, completions)
