"""``ackflow serve``: the dashboard, and the HTTP endpoint outside systems call to complete
lazy tasks — the routes of a Starlette app, assembled and served by `runner.ops.http.app`.

Dashboard (HTML): ``/runs`` (filters, counts, pages), ``/runs/<id>`` (DAG, timeline, tasks, history,
control; a task's page, ``/runs/<id>/tasks/<task>``, is in `task_forms`), ``/dlq`` (dead letters), ``/workers`` and ``/queues`` (runner.ops.fleet; the same as
JSON at ``GET /v1/workers`` and ``GET /v1/queues``, routed by `runner.ops.http.rest`). Read-only unless an operator token is configured
(``ACKFLOW_OPERATOR_TOKEN``, at least 16 characters); an operator logs in with it (logins are
rate limited; a SameSite=Strict, HttpOnly cookie then holds a random session id) to pause,
resume, cancel, retry, replay and purge. Only the configured host names are served to a
browser (DNS rebinding); every POST must come from the dashboard's own origin (CSRF).

Completion API (JSON):

    POST /v1/complete   {"result": ...}                      complete the task the token names
    POST /v1/fail       {"error": "message", "type": "..."}  fail it (its retry policy applies)
    GET  /healthz    the server is alive: 200 {"ok": true}
    GET  /readyz     it can serve: 200 {"ready": true, ...}, or 503 while Redis does not answer

The completion token is the credential: ``Authorization: Bearer <token>`` (or a ``"token"``
field in the JSON body). ``?wait=S`` (default 10, at most 60) is how long to wait for an
engine to apply the completion. Answers, always JSON:

    200 {"status": "completed" | "failed", "run_id", "task"}
    202 {"status": "accepted"}           sent, not yet applied by an engine (it will be)
    400 malformed JSON, or a result that does not fit the task
    401 no token                         403 invalid (forged, altered, foreign) token, or its run
                                             does not exist (one answer: no run enumeration)
    409 already completed, or the run is finished/cancelled
    411 a chunked body (send Content-Length)   413 body too large
    503 RabbitMQ or Redis unavailable, or the server is at its connection limit

Blocking work (the store, the broker) runs in bounded thread pools, one for pages and one for
completions, each thread borrowing a pooled `Client`; a page is rendered, the client given
back, and only then written, so a client that does not read holds nothing but its socket.
Tokens are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from runner import logs, protocol, states
from runner.broker import DeadLetters, QueueInfo
from runner.client import Client
from runner.client.tokens import InvalidToken, parse_token
from runner.errors import (
    AckflowError,
    AlreadyCompleted,
    BrokerUnavailable,
    CompletionRefused,
    PayloadTooLargeError,
    RunNotFound,
    StoreUnavailable,
    WaitTimeout,
)
from runner.ops import fleet
from runner.ops.dashboard import fleet as fleet_pages
from runner.ops.dashboard import pages as dashboard
from runner.ops.http.auth import SESSION_S, LoginLimiter, Sessions, check_operator_token
from runner.ops.http.pool import POOL_SIZE, ClientPool

log = logging.getLogger("ackflow.http")
T = TypeVar("T")

PROBES = ("/healthz", "/readyz")  # for orchestrators: no Host check, JSON answers
MAX_WAIT_S = 60.0
MAX_FORM = 64_000
COOKIE = "ackflow_op"
STATIC = Path(__file__).resolve().parents[1] / "dashboard" / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class Api:
    """The routes, and what they share: client pools, sessions, the login limiter."""

    def __init__(
        self,
        factory: Callable[[], Client],
        max_body: int,
        operator_token: str,
        completions: bool,
    ) -> None:
        check_operator_token(operator_token)
        self.pool = ClientPool(factory)  # completions
        self.pages = ClientPool(factory)  # the dashboard: slow completions never starve it
        self.sessions = Sessions()
        self.logins = LoginLimiter()
        self.max_body = max_body
        self.operator_token = operator_token
        self.completions = completions
        self._limits: dict[str, anyio.CapacityLimiter] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/v1/complete", self.complete, methods=["POST"]),
            Route("/v1/fail", self.complete, methods=["POST"]),
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/", self.runs, methods=["GET"]),
            Route("/runs", self.runs, methods=["GET"]),
            Route("/runs/{run_id}", self.run, methods=["GET"]),
            Route("/dlq", self.dlq, methods=["GET"]),
            *(Route(path, self.fleet_page, methods=["GET"]) for path in fleet_pages.PAGES),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/runs/{run_id}/{action}", self.control, methods=["POST"]),
            Route("/dlq/{rest:path}", self.dlq_action, methods=["POST"]),
        ]

    # --- plumbing ------------------------------------------------------------------------

    async def _in_thread(self, pool: str, fn: Callable[[], T]) -> T:
        """Run blocking ``fn`` in the pool's threads (as many as it has clients)."""
        if pool not in self._limits:  # made in the event loop's thread, on first use
            self._limits[pool] = anyio.CapacityLimiter(POOL_SIZE)
        return await anyio.to_thread.run_sync(fn, limiter=self._limits[pool])

    async def _body(self, request: Request, limit: int) -> bytes | Response:
        """The whole body, or the answer refusing it (413; the connection then closes)."""
        length = int(request.headers.get("content-length") or 0)  # h11 checked: ASCII digits
        if length > limit:
            return JSONResponse({"error": f"body of {length} bytes is over the limit of {limit}"}, 413)
        try:
            return await request.body()
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is there to read it

    def _operator(self, request: Request) -> bool:
        return bool(self.operator_token) and self.sessions.valid(request.cookies.get(COOKIE, ""))

    def _page(
        self, request: Request, code: int, body: str, title: str, refresh: bool = False
    ) -> HTMLResponse:
        flash = request.query_params.get("msg", "")
        page = dashboard.layout(
            title, body, self._operator(request), bool(self.operator_token), flash, refresh
        )
        return HTMLResponse(
            page, code, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        )

    async def _dashboard(self, request: Request, render: Callable[[Client], Response]) -> Response:
        def work() -> Response:
            with self.pages.client() as client:  # given back before the page is written
                return render(client)

        try:
            return await self._in_thread("pages", work)
        except (BrokerUnavailable, StoreUnavailable) as e:
            return PlainTextResponse(str(e), 503)

    @staticmethod
    def _cross_site(request: Request) -> bool:
        """A browser's request from another site (CSRF): refused for every POST of the dashboard.
        The Host it is compared with has passed the allow-list (`Guard`)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        return (
            origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
        )

    @staticmethod
    def _redirect(where: str, cookie: str | None = None) -> Response:
        headers = {"Location": where}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        return Response(b"", 303, headers=headers, media_type="text/plain")

    # --- pages -----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(self, request: Request) -> Response:
        """Ready while Redis answers (one cheap read through a pooled client); the broker is
        reached only for a completion, so its outage shows there, as a 503, not here."""

        def check() -> str | None:
            with self.pages.client() as client:
                try:
                    client.store.count_runs(None)
                except StoreUnavailable as e:
                    return logs.scrub(str(e))
            return None

        why = await self._in_thread("pages", check)
        checks = {"redis": why or "ok"}
        return JSONResponse({"ready": why is None, "checks": checks}, 200 if why is None else 503)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            return PlainTextResponse("not found", 404)
        f = files[name]
        return Response(
            f.read_bytes(),
            media_type=_STATIC_TYPES.get(f.suffix, "application/octet-stream"),
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def runs(self, request: Request) -> Response:
        query = dict(request.query_params)
        if wanted := query.get("id", "").strip():  # the search box: to the run's page (or its 404)
            return Response(status_code=303, headers={"Location": f"/runs/{quote(wanted, safe=':')}"})

        def render(client: Client) -> Response:
            try:
                body = dashboard.runs_page(client, query)
            except (ValueError, OverflowError) as e:
                return self._page(request, 400, f"<h1>Bad filter</h1><p>{escape(str(e))}</p>", "Bad filter")
            return self._page(request, 200, body, "Runs", refresh="before" not in query)  # newest page

        return await self._dashboard(request, render)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]  # percent-decoded
        operator = self._operator(request)

        def render(client: Client) -> Response:
            try:
                body, info = dashboard.run_page(client, run_id, operator)
            except RunNotFound:
                return self._page(request, 404, dashboard.not_found(run_id), "No such run")
            return self._page(request, 200, body, f"Run {run_id}", refresh=not info.done)

        return await self._dashboard(request, render)

    async def dlq(self, request: Request) -> Response:
        operator = self._operator(request)
        return await self._dashboard(
            request, lambda c: self._page(request, 200, dashboard.dlq_page(c, operator), "Dead letters")
        )

    async def fleet_page(self, request: Request) -> Response:
        """/workers, /queues and /schedules: pages that refresh themselves."""
        title, render = fleet_pages.PAGES[request.url.path]
        return await self._dashboard(
            request, lambda c: self._page(request, 200, render(c), title, refresh=True)
        )

    async def workers_json(self, request: Request) -> Response:
        def render(c: Client) -> Response:
            now = protocol.now_ms()
            return JSONResponse({"workers": [w.as_json(now) for w in fleet.workers(c.store, c.config, now)]})

        return await self._dashboard(request, render)

    async def queues_json(self, request: Request) -> Response:
        def render(c: Client) -> Response:
            if not isinstance(c.broker, QueueInfo):
                return JSONResponse({"queues": []})
            return JSONResponse(
                {"queues": [r.as_json() for r in fleet.queue_rows(c.store, c.broker, c.config)]}
            )

        return await self._dashboard(request, render)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/v1/"):
            return JSONResponse({"error": {"type": "not_found", "message": "no such endpoint"}}, 404)
        if request.url.path in PROBES:
            return JSONResponse({"error": "not found"}, 404)
        return self._page(request, 404, "<h1>Not found</h1>", "Not found")

    async def wrong_method(self, request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/v1/"):
            message = f"{request.method} is not allowed here"
            return JSONResponse({"error": {"type": "method_not_allowed", "message": message}}, 405)
        return PlainTextResponse("method not allowed here", 405)

    # --- operators ---------------------------------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str] | Response:
        if self._cross_site(request):
            return self._page(
                request, 403, "<h1>Refused</h1><p>A request from another site.</p>", "Forbidden"
            )
        raw = await self._body(request, MAX_FORM)
        if isinstance(raw, Response):
            return raw
        return {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        who = request.client.host if request.client else "-"
        wait = self.logins.wait_s(who)
        if wait > 0:
            page = self._page(
                request, 429, f"<h1>Too many attempts</h1><p>Try again in {int(wait) + 1} s.</p>", "Wait"
            )
            page.headers["Retry-After"] = str(int(wait) + 1)
            return page
        want = self.operator_token
        if want and hmac.compare_digest(form.get("token", "").encode(), want.encode()):
            self.logins.succeeded(who)
            session = self.sessions.open()
            cookie = f"{COOKIE}={session}; Path=/; Max-Age={SESSION_S}; HttpOnly; SameSite=Strict"
            return self._redirect("/runs?msg=logged+in", cookie)
        if want:
            self.logins.failed(who)
        return self._redirect("/runs?msg=wrong+operator+token")

    async def logout(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        self.sessions.close(request.cookies.get(COOKIE, ""))
        return self._redirect(
            "/runs?msg=logged+out", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        )

    async def _operator_form(self, request: Request) -> Response | None:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        if not self._operator(request):
            return self._page(
                request, 403, "<h1>Operators only</h1><p>Log in with the operator token.</p>", "Forbidden"
            )
        return None

    async def control(self, request: Request) -> Response:
        refused = await self._operator_form(request)
        if refused is not None:
            return refused
        run_id, action = request.path_params["run_id"], request.path_params["action"]
        if action not in states.CONTROL_ALLOWED:
            return self._page(request, 404, "<h1>Not found</h1>", "Not found")
        back = f"/runs/{quote(run_id, safe=':')}"

        def act(client: Client) -> Response:
            try:
                status = getattr(client, action)(run_id, "from the dashboard", wait_s=10.0)
            except AckflowError as e:
                return self._redirect(f"{back}?{urlencode({'msg': f'refused: {e}'})}")
            return self._redirect(f"{back}?{urlencode({'msg': f'{action}: run is {status}'})}")

        return await self._dashboard(request, act)

    async def dlq_action(self, request: Request) -> Response:
        refused = await self._operator_form(request)
        if refused is not None:
            return refused
        # from the raw path: a dead letter's id is percent-encoded whole, '/' included
        raw = request.scope.get("raw_path", b"").decode("latin-1").removeprefix("/dlq/")
        parts = raw.split("/")

        def act(client: Client) -> Response:
            broker = client.broker
            if not isinstance(broker, DeadLetters):
                return self._redirect("/dlq?msg=this+broker+keeps+no+dead+letters")
            try:
                if len(parts) == 2 and parts[1] == "replay":
                    dl = broker.replay_dead(unquote(parts[0]))
                    return self._redirect(f"/dlq?{urlencode({'msg': f'replayed {dl.id} to {dl.queue}'})}")
                if parts == ["purge"]:
                    n = broker.purge_dead()
                    return self._redirect(f"/dlq?{urlencode({'msg': f'purged {n} dead letters'})}")
            except AckflowError as e:
                return self._redirect(f"/dlq?{urlencode({'msg': f'refused: {e}'})}")
            return self._page(request, 404, "<h1>Not found</h1>", "Not found")

        return await self._dashboard(request, act)

    # --- completions -------------------------------------------------------------------------

    async def complete(self, request: Request) -> Response:
        if not self.completions:
            return JSONResponse(
                {"error": "this server completes no lazy tasks: ACKFLOW_SECRET is not set"}, 503
            )
        raw = await self._body(request, self.max_body)
        if isinstance(raw, Response):
            return raw
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except (ValueError, RecursionError) as e:
            return JSONResponse({"error": f"malformed JSON: {type(e).__name__}: {str(e)[:200]}"}, 400)
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else body.get("token")
        if not token:
            return JSONResponse({"error": "no completion token (send Authorization: Bearer <token>)"}, 401)
        try:
            wait_s = float(parse_qs(request.url.query).get("wait", ["10"])[0])
            if not 0 <= wait_s <= MAX_WAIT_S:  # also refuses nan
                raise ValueError
        except ValueError:
            return JSONResponse({"error": f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}"}, 400)
        fail = request.url.path == "/v1/fail"
        if fail and (not isinstance(body.get("error"), str) or not body["error"]):
            return JSONResponse({"error": 'a failure needs "error": "<message>"'}, 400)
        if not fail and "result" not in body:
            return JSONResponse(
                {"error": 'a completion needs "result" (null for a task providing nothing)'}, 400
            )
        return await self._in_thread("completions", lambda: self._complete(fail, str(token), body, wait_s))

    def _complete(self, fail: bool, token: str, body: dict[str, Any], wait_s: float) -> Response:
        try:
            run_id, task = parse_token(token)
            with self.pool.client() as client:  # the completions' own pool
                if fail:
                    error_type = str(body.get("type") or "ExternalError")
                    status = client.fail(token, body["error"], error_type=error_type, wait_s=wait_s)
                else:
                    status = client.complete(token, body["result"], wait_s=wait_s)
        except InvalidToken as e:  # before RunNotFound: a token naming no run is invalid
            return JSONResponse({"error": str(e)}, 403)
        except WaitTimeout:
            status = "accepted"
        except RunNotFound as e:
            return JSONResponse({"error": str(e)}, 404)
        except AlreadyCompleted as e:
            return JSONResponse({"error": str(e), "status": "already completed"}, 409)
        except CompletionRefused as e:
            return JSONResponse({"error": str(e)}, 409)
        except PayloadTooLargeError as e:
            return JSONResponse({"error": str(e)}, 413)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)
        except (BrokerUnavailable, StoreUnavailable) as e:
            return JSONResponse({"error": str(e)}, 503)
        if status == "accepted":
            return JSONResponse({"status": status, "run_id": run_id, "task": task}, 202)
        return JSONResponse({"status": status, "run_id": run_id, "task": task}, 200)
