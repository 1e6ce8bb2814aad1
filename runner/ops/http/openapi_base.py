"""The building blocks of the OpenAPI document (`runner.ops.http.openapi`): references, JSON
answers, the error answers, operations and their parameters."""

from __future__ import annotations

from typing import Any

_NULLABLE_INT = {"type": ["integer", "null"]}
_ANY_OBJECT = {"type": ["object", "null"]}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "bad input: malformed JSON, a bad field, or a run input the flow refuses",
        401: "no API token, or an unknown one",
        403: "the token lacks the scope; or no token is configured (no writes; reads only by own host name)",
        404: "no such run, task, flow or schedule",
        409: "the run's state does not allow it, the run id is taken by another flow or inputs, or the schedule name is taken",
        413: "the body is over max_payload_bytes",
        503: "Redis or RabbitMQ unavailable, or (task completion) ACKFLOW_SECRET not set",
    }
    return {str(c): _json(_ERROR, why[c]) for c in codes}


def _op(
    summary: str,
    scope: str,
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": [scope]}], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
