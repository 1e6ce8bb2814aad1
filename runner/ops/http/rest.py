"""The REST API of ``ackflow serve``, under ``/v1`` (its OpenAPI document: `runner.ops.http.openapi`,
served at ``GET /v1/openapi.json``):

    POST /v1/runs                     submit a registered flow by name, or an inline definition
                                      (`runner.ops.http.rest_submit`)                  scope submit
    GET  /v1/runs?status=&flow=&since_ms=&before=&limit=   a page of runs, newest first   read
    GET  /v1/runs/{id}                          a run, its tasks, result or error          read
    GET  /v1/runs/{id}/history                  its transitions                            read
    POST /v1/runs/{id}/cancel|pause|resume|retry                                        control
    POST /v1/runs/{id}/tasks/{task}/complete|fail   finish a waiting task (needs ACKFLOW_SECRET) control
    GET  /v1/flows, /v1/flows/{name}            the flow registry                          read
    GET  /v1/workers, /v1/queues                the fleet (`runner.ops.http.api`)          read
    /v1/schedules...                            schedules (`runner.ops.http.rest_schedules`)

Authentication (`runner.ops.http.tokens`): ``Authorization: Bearer <API token>``; 401 without
a token or with an unknown one, 403 with a token lacking the endpoint's scope. With no API
token configured, the API takes no writes (403) and answers reads without a token only to
requests naming this server in their Host header (the dashboard's rule, which shows the same
runs: a page of another site cannot read it through DNS rebinding); once a token is configured,
every endpoint above needs one. Errors are always ``{"error": {"type", "message"}}``; bodies are
at most ``max_payload_bytes`` (413).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner import states
from runner.client import Client, flows
from runner.client.render import history_dict, json_safe, run_dict, summary_dict
from runner.errors import (
    AckflowError,
    AlreadyCompleted,
    BrokerUnavailable,
    CompletionRefused,
    EncodeError,
    FlowDefinitionError,
    InputTypeError,
    MissingInputError,
    PayloadTooLargeError,
    RunConflictError,
    RunLost,
    RunNotFound,
    RunStateError,
    StoreUnavailable,
    UnknownFlowError,
    UnknownInputError,
    WaitTimeout,
)
from runner.ops.http import rest_submit
from runner.ops.http.api import MAX_WAIT_S, Api
from runner.ops.http.guard import host_name
from runner.ops.http.openapi import document
from runner.ops.http.rest_schedules import ScheduleRoutes
from runner.ops.http.tokens import ApiTokens

MAX_LIMIT = 200
_BAD_INPUT = (  # most specific first
    (UnknownFlowError, "unknown_flow"),
    (UnknownInputError, "unknown_input"),
    (MissingInputError, "missing_input"),
    (InputTypeError, "input_type"),
    (FlowDefinitionError, "invalid_flow"),
)


def error(code: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one error shape."""
    return JSONResponse({"error": {"type": kind, "message": message}}, code, headers=headers)


def failure(e: Exception) -> Response:
    """The answer for what a client call raised."""
    for cls, kind in _BAD_INPUT:
        if isinstance(e, cls):
            return error(400, kind, str(e))
    if isinstance(e, RunLost):
        return error(404, "run_lost", str(e))
    if isinstance(e, RunNotFound):
        return error(404, "run_not_found", str(e))
    if isinstance(e, RunConflictError):
        return error(409, "run_conflict", str(e))
    if isinstance(e, RunStateError):
        return error(409, "invalid_state", str(e))
    if isinstance(e, AlreadyCompleted):
        return error(409, "already_completed", str(e))
    if isinstance(e, CompletionRefused):
        return error(409, "completion_refused", str(e))
    if isinstance(e, PayloadTooLargeError):
        return error(413, "payload_too_large", str(e))
    if isinstance(e, BrokerUnavailable | StoreUnavailable):
        return error(503, "unavailable", str(e))
    if isinstance(e, EncodeError | ValueError | AckflowError):
        return error(400, "bad_request", str(e))
    raise e


def _int(params: dict[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdecimal()) or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {raw[:40]!r}")
    return int(raw)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def _wait_s(request: Request) -> float:
    raw = request.query_params.get("wait", "10")
    try:
        wait = float(raw)
        if not 0 <= wait <= MAX_WAIT_S:  # also refuses nan
            raise ValueError
    except ValueError:
        raise ValueError(f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}") from None
    return wait


def flow_dict(info: flows.FlowInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "digest": info.digest,
        "registered_ms": info.registered_ms,
        "by": info.by,
        "tasks": info.tasks,
        "queues": info.queues,
        "inputs": info.inputs,
        "versions": info.versions,
    }


class Rest:
    """The /v1 REST routes, sharing the dashboard's pools (`Api`): reads borrow the pages'
    clients, writes (which may wait for an engine) the completions'."""

    def __init__(self, api: Api, tokens: ApiTokens, hosts: frozenset[str]) -> None:
        self.api = api
        self.tokens = tokens
        self.hosts = hosts

    def routes(self) -> list[Route]:
        return [
            Route("/v1/openapi.json", self.openapi, methods=["GET"]),
            Route("/v1/runs", self.list_runs, methods=["GET"]),
            Route("/v1/runs", self.submit, methods=["POST"]),
            Route("/v1/runs/{run_id}", self.get_run, methods=["GET"]),
            Route("/v1/runs/{run_id}/history", self.history, methods=["GET"]),
            Route("/v1/runs/{run_id}/{action}", self.control, methods=["POST"]),
            Route("/v1/runs/{run_id}/tasks/{task}/{outcome}", self.finish_task, methods=["POST"]),
            Route("/v1/flows", self.list_flows, methods=["GET"]),
            Route("/v1/flows/{name}", self.get_flow, methods=["GET"]),
            Route("/v1/workers", self.fleet, methods=["GET"]),
            Route("/v1/queues", self.fleet, methods=["GET"]),
            *ScheduleRoutes(self._refusal, self._json, self._run).routes(),
        ]

    # --- plumbing ------------------------------------------------------------------------

    def _refusal(self, request: Request, scope: str) -> Response | None:
        """None if the request may use an endpoint of ``scope``, else the refusal."""
        if not self.tokens.configured:
            if scope != "read":
                return error(
                    403,
                    "writes_disabled",
                    "this server takes no API writes: no API token is configured "
                    "(set ACKFLOW_API_TOKEN or ACKFLOW_API_TOKENS_FILE)",
                )
            if host_name(request.headers.get("host", "")) not in self.hosts:
                return error(
                    403,
                    "forbidden",
                    "without an API token configured, reads are answered only to this server's "
                    "own host names (--allow-host)",
                )
            return None
        auth = request.headers.get("authorization", "")
        presented = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not presented:
            return error(
                401,
                "unauthorized",
                "no API token: send Authorization: Bearer <token>",
                {"WWW-Authenticate": 'Bearer realm="ackflow"'},
            )
        scopes = self.tokens.scopes(presented)
        if scopes is None:
            return error(
                401,
                "unauthorized",
                "invalid API token",
                {"WWW-Authenticate": 'Bearer realm="ackflow", error="invalid_token"'},
            )
        if scope not in scopes:
            return error(
                403,
                "insufficient_scope",
                f"this API token lacks the {scope!r} scope",
                {"WWW-Authenticate": f'Bearer realm="ackflow", error="insufficient_scope", scope="{scope}"'},
            )
        return None

    async def _json(self, request: Request, required: bool = True) -> dict[str, Any] | Response:
        limit = self.api.max_body
        length = int(request.headers.get("content-length") or 0)
        if length > limit:
            return error(413, "payload_too_large", f"body of {length} bytes is over the limit of {limit}")
        try:
            raw = await request.body()
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is there to read it
        if not raw.strip() and not required:
            return {}
        try:
            body = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            return error(400, "bad_request", f"malformed JSON: {type(e).__name__}: {str(e)[:200]}")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be a JSON object")
        return body

    async def _run(self, write: bool, fn: Callable[[Client], Response]) -> Response:
        """``fn`` with a pooled client in a thread; what it raises is answered (`failure`)."""
        pool = self.api.pool if write else self.api.pages

        def work() -> Response:
            with pool.client() as client:
                try:
                    return fn(client)
                except (AckflowError, ValueError) as e:
                    return failure(e)

        return await self.api._in_thread("completions" if write else "pages", work)

    # --- endpoints -----------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(document())

    async def list_runs(self, request: Request) -> Response:
        refused = self._refusal(request, "read")
        if refused is not None:
            return refused
        q = dict(request.query_params)
        unknown = sorted(set(q) - {"status", "flow", "since_ms", "before", "limit"})
        if unknown:
            return error(400, "bad_request", f"unknown query parameter {unknown[0]!r}")
        status = q.get("status") or None
        if status is not None and status not in states.RUN_STATES:
            return error(400, "bad_request", f"status must be one of {', '.join(states.RUN_STATES)}")
        try:
            since = _int(q, "since_ms", 0, 0, 2**53) or 0
            before = _int(q, "before", None, 0, 2**53)
            limit = _int(q, "limit", 50, 1, MAX_LIMIT) or 50
        except ValueError as e:
            return error(400, "bad_request", str(e))

        def page(client: Client) -> Response:
            runs, cursor = client.page(status, q.get("flow") or None, since, before, limit)
            return JSONResponse({"runs": [summary_dict(r) for r in runs], "next_before": cursor})

        return await self._run(False, page)

    async def submit(self, request: Request) -> Response:
        refused = self._refusal(request, "submit")
        if refused is not None:
            return refused
        body = await self._json(request)
        if isinstance(body, Response):
            return body
        bad = rest_submit.refusal(body)
        if bad is not None:
            return bad
        return await self._run(True, rest_submit.sender(body))

    async def get_run(self, request: Request) -> Response:
        refused = self._refusal(request, "read")
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        return await self._run(False, lambda c: JSONResponse(json_safe(run_dict(c.status(run_id)))))

    async def history(self, request: Request) -> Response:
        refused = self._refusal(request, "read")
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        try:
            start = _int(dict(request.query_params), "start", 0, 0, 2**31) or 0
        except ValueError as e:
            return error(400, "bad_request", str(e))

        def read(client: Client) -> Response:
            entries = [history_dict(e) for e in client.history(run_id, start)]
            if not entries and start:
                client.status(run_id)  # RunNotFound for a run that does not exist
            return JSONResponse(json_safe({"run_id": run_id, "history": entries}))

        return await self._run(False, read)

    async def control(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in states.CONTROL_ALLOWED:
            return error(
                404, "not_found", f"no such action {action!r} (actions: {', '.join(states.CONTROL_ALLOWED)})"
            )
        refused = self._refusal(request, "control")
        if refused is not None:
            return refused
        body = await self._json(request, required=False)
        if isinstance(body, Response):
            return body
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            return error(400, "bad_request", '"reason" must be a string')
        try:
            wait_s = _wait_s(request)
        except ValueError as e:
            return error(400, "bad_request", str(e))
        run_id = request.path_params["run_id"]

        def act(client: Client) -> Response:
            try:
                status = getattr(client, action)(run_id, reason or "through the REST API", wait_s=wait_s)
            except WaitTimeout:
                return JSONResponse({"run_id": run_id, "status": "accepted"}, 202)
            return JSONResponse({"run_id": run_id, "status": status})

        return await self._run(True, act)

    async def finish_task(self, request: Request) -> Response:
        outcome = request.path_params["outcome"]
        if outcome not in ("complete", "fail"):
            return error(404, "not_found", f"no such task action {outcome!r} (complete or fail)")
        refused = self._refusal(request, "control")
        if refused is not None:
            return refused
        if not self.api.completions:
            return error(503, "unavailable", "this server completes no tasks: ACKFLOW_SECRET is not set")
        body = await self._json(request)
        if isinstance(body, Response):
            return body
        fail = outcome == "fail"
        if fail and (not isinstance(body.get("error"), str) or not body["error"]):
            return error(400, "bad_request", 'a failure needs "error": "<message>"')
        if fail and not isinstance(body.get("type", ""), str):
            return error(400, "bad_request", '"type" must be a string')
        if not fail and "result" not in body:
            return error(
                400, "bad_request", 'a completion needs "result" (null for a task providing nothing)'
            )
        try:
            wait_s = _wait_s(request)
        except ValueError as e:
            return error(400, "bad_request", str(e))
        run_id, task = request.path_params["run_id"], request.path_params["task"]

        def act(client: Client) -> Response:
            if task not in client.specs(run_id):
                client.status(run_id)  # RunNotFound first
                return error(404, "task_not_found", f"run {run_id} has no task {task!r}")
            token = client.token_for(run_id, task)
            if fail:
                kind = str(body.get("type") or "ExternalError")
                status = client.fail(token, body["error"], error_type=kind, wait_s=wait_s)
            else:
                status = client.complete(token, body["result"], wait_s=wait_s)
            code = 202 if status == "accepted" else 200
            return JSONResponse({"status": status, "run_id": run_id, "task": task}, code)

        return await self._run(True, act)

    async def fleet(self, request: Request) -> Response:
        """``/v1/workers`` and ``/v1/queues`` (the dashboard's pages as JSON), read scope."""
        refused = self._refusal(request, "read")
        if refused is not None:
            return refused
        if request.url.path == "/v1/workers":
            return await self.api.workers_json(request)
        return await self.api.queues_json(request)

    async def list_flows(self, request: Request) -> Response:
        refused = self._refusal(request, "read")
        if refused is not None:
            return refused
        return await self._run(
            False, lambda c: JSONResponse({"flows": [flow_dict(f) for f in flows.list_flows(c.store)]})
        )

    async def get_flow(self, request: Request) -> Response:
        refused = self._refusal(request, "read")
        if refused is not None:
            return refused
        name = request.path_params["name"]

        def show(client: Client) -> Response:
            try:
                info = flows.info(client.store, name)
            except UnknownFlowError as e:
                return error(404, "unknown_flow", str(e))
            return JSONResponse({**flow_dict(info), "digests": client.store.flow_digests(name)})

        return await self._run(False, show)
