"""The schedules of the REST API (`runner.ops.http.rest`; their OpenAPI part:
`runner.ops.http.openapi_schedules`):

    GET    /v1/schedules                     every schedule                              read
    POST   /v1/schedules                     add one (cron, every, or once at/in)        submit
    GET    /v1/schedules/{name}              one schedule                                read
    DELETE /v1/schedules/{name}              forget it (its runs stay)                   control
    POST   /v1/schedules/{name}/pause|resume                                             control
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.client import Client
from runner.client.schedules import as_dict
from runner.errors import ScheduleConflict, ScheduleError, ScheduleNotFound

Refusal = Callable[[Request, str], "Response | None"]
ReadJson = Callable[[Request], Awaitable["dict[str, Any] | Response"]]
InThread = Callable[[bool, Callable[[Client], Response]], Awaitable[Response]]


def error(code: int, kind: str, message: str) -> JSONResponse:
    """The API's one error shape (as `runner.ops.http.rest.error`)."""
    return JSONResponse({"error": {"type": kind, "message": message}}, code)


FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "flow": str,
    "inputs": dict,
    "cron": str,
    "tz": str,
    "every": (str, int),
    "at": (str, int),
    "in": (str, int),
    "version": str,
    "overlap": str,
    "catchup": str,
    "catchup_window": (str, int),
    "run_id": str,
}
ACTIONS = ("pause", "resume")


class ScheduleRoutes:
    """The routes, given the REST API's plumbing: its token check, its body reader, and its
    runner of client calls in a thread (which answers the errors they raise)."""

    def __init__(self, refusal: Refusal, read_json: ReadJson, in_thread: InThread) -> None:
        self.refusal = refusal
        self.read_json = read_json
        self.in_thread = in_thread

    def routes(self) -> list[Route]:
        return [
            Route("/v1/schedules", self.list_, methods=["GET"]),
            Route("/v1/schedules", self.add, methods=["POST"]),
            Route("/v1/schedules/{name}", self.get, methods=["GET"]),
            Route("/v1/schedules/{name}", self.delete, methods=["DELETE"]),
            Route("/v1/schedules/{name}/{action}", self.change, methods=["POST"]),
        ]

    async def _run(self, request: Request, scope: str, fn: Callable[[Client], Response]) -> Response:
        refused = self.refusal(request, scope)
        if refused is not None:
            return refused

        def answer(client: Client) -> Response:
            try:
                return fn(client)
            except ScheduleNotFound as e:
                return error(404, "schedule_not_found", str(e))
            except ScheduleConflict as e:
                return error(409, "schedule_conflict", str(e))
            except ScheduleError as e:
                return error(400, "invalid_schedule", str(e))

        return await self.in_thread(scope != "read", answer)

    async def list_(self, request: Request) -> Response:
        return await self._run(
            request, "read", lambda c: JSONResponse({"schedules": [as_dict(s) for s in c.schedules.list()]})
        )

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        return await self._run(request, "read", lambda c: JSONResponse(as_dict(c.schedules.get(name))))

    async def add(self, request: Request) -> Response:
        refused = self.refusal(request, "submit")
        if refused is not None:
            return refused
        body = await self.read_json(request)
        if isinstance(body, Response):
            return body
        bad = _check(body)
        if bad:
            return error(400, "bad_request", bad)
        kwargs: dict[str, Any] = {
            k: body[k] for k in FIELDS if k in body and k not in ("name", "flow", "inputs")
        }
        if "in" in kwargs:
            kwargs["in_"] = kwargs.pop("in")

        def add(client: Client) -> Response:
            s = client.schedules.add(body["name"], body["flow"], body.get("inputs", {}), **kwargs)
            where = f"/v1/schedules/{quote(s.name)}"
            return JSONResponse(as_dict(s), 201, headers={"Location": where})

        return await self._run(request, "submit", add)

    async def delete(self, request: Request) -> Response:
        name = request.path_params["name"]

        def delete(client: Client) -> Response:
            client.schedules.delete(name)
            return JSONResponse({"name": name, "deleted": True})

        return await self._run(request, "control", delete)

    async def change(self, request: Request) -> Response:
        action, name = request.path_params["action"], request.path_params["name"]
        if action not in ACTIONS:
            return error(404, "not_found", f"no such action {action!r} (actions: {', '.join(ACTIONS)})")
        return await self._run(
            request, "control", lambda c: JSONResponse(as_dict(getattr(c.schedules, action)(name)))
        )


def _check(body: dict[str, Any]) -> str | None:
    """What is wrong with a schedule's body, before any lookup; None if nothing."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        return f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(FIELDS))})"
    for field in ("name", "flow"):
        if not isinstance(body.get(field), str) or not body[field]:
            return f'a schedule needs "{field}"' + (
                ": the name of a registered flow" if field == "flow" else ""
            )
    for field, kinds in FIELDS.items():
        value = body.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            want = (
                "a JSON object" if kinds is dict else "a string" if kinds is str else "a string or a number"
            )
            return f'"{field}" must be {want}'
    return None
