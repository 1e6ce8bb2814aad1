"""``POST /v1/runs`` of the REST API (`runner.ops.http.rest`): a run of a registered flow by
name (``"flow"``), or of an inline flow definition (``"definition"``: a flow document of
`runner.define.data`, as a JSON object or as YAML/JSON text), compiled here against the task
catalogue (`runner.client.catalogue`) — no user code is imported or run by the server. Either
way the run keeps the spec it was submitted with, and a submit is idempotent by run id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from starlette.responses import JSONResponse, Response

from runner.client import Client, catalogue, flows
from runner.client.client import MAX_DEADLINE_S

FIELDS = {"flow", "definition", "inputs", "run_id", "version", "deadline_s"}


def _error(kind: str, message: str) -> JSONResponse:
    """A 400 in the API's one error shape (as `runner.ops.http.rest.error`)."""
    return JSONResponse({"error": {"type": kind, "message": message}}, 400)


def refusal(body: dict[str, Any]) -> Response | None:
    """The 400 for a submit body that is malformed, or None."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return _error("bad_request", f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(FIELDS))})")
    flow, definition, inputs = body.get("flow"), body.get("definition"), body.get("inputs", {})
    run_id, version, deadline = body.get("run_id"), body.get("version"), body.get("deadline_s")
    if ("flow" in body) == ("definition" in body):
        return _error(
            "bad_request",
            'a run needs "flow" (the name of a registered flow) or "definition" (an inline flow '
            "definition), not both",
        )
    if "flow" in body and (not isinstance(flow, str) or not flow):
        return _error("bad_request", '"flow" must be the name of a registered flow')
    if "definition" in body:
        if not isinstance(definition, dict | str) or not definition:
            return _error(
                "bad_request", '"definition" must be a flow document: a JSON object, or its YAML text'
            )
        if version is not None:
            return _error(
                "bad_request", '"version" names a registered flow\'s version: not with "definition"'
            )
    if not isinstance(inputs, dict):
        return _error("bad_request", '"inputs" must be a JSON object of input names to values')
    for name, value in (("run_id", run_id), ("version", version)):
        if value is not None and not isinstance(value, str):
            return _error("bad_request", f'"{name}" must be a string')
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not 0 < deadline <= MAX_DEADLINE_S
    ):
        return _error(
            "bad_request", f'"deadline_s" must be a number of seconds > 0 and at most {MAX_DEADLINE_S}'
        )
    return None


def sender(body: dict[str, Any]) -> Callable[[Client], Response]:
    """What submits a body `refusal` accepted, with a client (in a worker thread: it reads the
    store); what it raises is answered by `runner.ops.http.rest.failure`."""
    inputs, run_id, deadline = body.get("inputs", {}), body.get("run_id"), body.get("deadline_s")

    def send(client: Client) -> Response:
        extra: dict[str, Any] = {}
        if "definition" in body:
            spec = catalogue.compile_definition(client.store, body["definition"])
            rid = client.submit(spec, inputs, run_id=run_id, timeout_s=deadline)
            name, extra = spec.name, {"version": flows.digest_of(spec)}
        else:
            name = body["flow"]
            rid = client.submit(name, inputs, run_id=run_id, timeout_s=deadline, version=body.get("version"))
        where = f"/v1/runs/{quote(rid, safe=':')}"
        answer = {"run_id": rid, "flow": name, "url": where, **extra}
        return JSONResponse(answer, 201, headers={"Location": where})

    return send
