"""The OpenAPI 3.1 document of the REST API (`runner.ops.http.rest`), served at
``GET /v1/openapi.json``. Kept by hand beside the routes; tests/unit/test_rest_api.py checks
every answer of its tests against it."""

from __future__ import annotations

from typing import Any

from runner.ops.http.openapi_base import (
    _ANY_OBJECT,
    _NULLABLE_INT,
    _errors,
    _json,
    _op,
    _path_param,
    _query,
    _ref,
)
from runner.ops.http.openapi_schedules import SCHEDULE_PATHS, SCHEDULE_SCHEMAS

_WAIT = _query("wait", {"type": "number", "minimum": 0, "maximum": 60}, "seconds to wait for an engine (10)")

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "additionalProperties": False,
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "SubmitRequest": {
        "type": "object",
        "description": "A run of a registered flow (flow, optionally version) or of an inline "
        "flow definition (definition), compiled by the server against the task catalogue "
        "that workers record; exactly one of flow and definition.",
        "oneOf": [{"required": ["flow"]}, {"required": ["definition"], "not": {"required": ["version"]}}],
        "additionalProperties": False,
        "properties": {
            "flow": {"type": "string", "description": "a registered flow's name"},
            "definition": {
                "description": "an inline flow definition: a flow document (the YAML/JSON format of "
                "`ackflow flows apply`, JSON Schema runner/define/flow.schema.json) as an object, or "
                "its YAML or JSON text; its tasks are looked up in the task catalogue, its modules "
                "are not imported",
                "oneOf": [{"type": "object"}, {"type": "string"}],
            },
            "inputs": {"type": "object"},
            "run_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$"},
            "version": {"type": "string", "description": "a version's digest (or its prefix)"},
            "deadline_s": {"type": "number", "exclusiveMinimum": 0},
        },
    },
    "Submitted": {
        "type": "object",
        "required": ["run_id", "flow", "url"],
        "additionalProperties": False,
        "properties": {
            "run_id": {"type": "string"},
            "flow": {"type": "string"},
            "url": {"type": "string"},
            "version": {"type": "string", "description": "an inline definition's compiled spec's digest"},
        },
    },
    "RunSummary": {
        "type": "object",
        "required": ["run_id", "status", "flow", "created_ms", "finished_ms"],
        "additionalProperties": False,
        "properties": {
            "run_id": {"type": "string"},
            "status": {"enum": ["PENDING", "RUNNING", "PAUSED", "SUCCESS", "FAILED", "CANCELLED"]},
            "flow": {"type": "string"},
            "created_ms": {"type": "integer"},
            "finished_ms": _NULLABLE_INT,
        },
    },
    "RunPage": {
        "type": "object",
        "required": ["runs", "next_before"],
        "additionalProperties": False,
        "properties": {
            "runs": {"type": "array", "items": _ref("RunSummary")},
            "next_before": {**_NULLABLE_INT, "description": "pass as ?before= for the next page"},
        },
    },
    "Task": {
        "type": "object",
        "required": ["status", "attempt"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string"},
            "attempt": {"type": "integer"},
            "worker": {"type": "string"},
            "duration_ms": _NULLABLE_INT,
            "error": _ANY_OBJECT,
            "progress": {"type": ["array", "null"]},
            "retry_at_ms": _NULLABLE_INT,
            "revert_error": _ANY_OBJECT,
            "child": {"type": ["string", "null"]},
            "started_ms": _NULLABLE_INT,
            "finished_ms": _NULLABLE_INT,
            "waiting_ms": _NULLABLE_INT,
        },
    },
    "Run": {
        "type": "object",
        "required": [
            "run_id",
            "status",
            "flow",
            "created_ms",
            "finished_ms",
            "inputs",
            "result",
            "error",
            "parent",
            "control",
            "tasks",
        ],  # fmt: skip
        "additionalProperties": False,
        "properties": {
            "run_id": {"type": "string"},
            "flow": {"type": "string"},
            "status": {"enum": ["PENDING", "RUNNING", "PAUSED", "SUCCESS", "FAILED", "CANCELLED"]},
            "created_ms": {"type": "integer"},
            "finished_ms": _NULLABLE_INT,
            "inputs": {"type": "object"},
            "result": _ANY_OBJECT,
            "error": _ANY_OBJECT,
            "parent": _ANY_OBJECT,
            "control": _ANY_OBJECT,
            "tasks": {"type": "object", "additionalProperties": _ref("Task")},
        },
    },
    "HistoryEntry": {
        "type": "object",
        "required": ["at_ms", "event", "kind", "scope", "from", "to", "attempt"],
        "additionalProperties": True,
        "properties": {
            "at_ms": {"type": "integer"},
            "event": {"type": "string"},
            "kind": {"type": "string"},
            "scope": {"type": "string", "description": '"run" or a task\'s name'},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "attempt": {"type": "integer"},
        },
    },
    "History": {
        "type": "object",
        "required": ["run_id", "history"],
        "additionalProperties": False,
        "properties": {
            "run_id": {"type": "string"},
            "history": {"type": "array", "items": _ref("HistoryEntry")},
        },
    },
    "ControlRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string"}},
    },
    "ControlResult": {
        "type": "object",
        "required": ["run_id", "status"],
        "additionalProperties": False,
        "properties": {
            "run_id": {"type": "string"},
            "status": {"type": "string", "description": "the run's new status, or accepted"},
        },
    },
    "CompleteRequest": {
        "type": "object",
        "required": ["result"],
        "properties": {"result": {"description": "what the task would have returned"}},
    },
    "FailRequest": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "minLength": 1}, "type": {"type": "string"}},
    },
    "TaskResult": {
        "type": "object",
        "required": ["status", "run_id", "task"],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["completed", "failed", "accepted"]},
            "run_id": {"type": "string"},
            "task": {"type": "string"},
        },
    },
    "Flow": {
        "type": "object",
        "required": ["name", "digest", "registered_ms", "by", "tasks", "queues", "inputs", "versions"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "digest": {"type": "string"},
            "registered_ms": {"type": "integer"},
            "by": {"type": "string"},
            "tasks": {"type": "array", "items": {"type": "string"}},
            "queues": {"type": "array", "items": {"type": "string"}},
            "inputs": {"type": "array", "items": {"type": "string"}},
            "versions": {"type": "integer"},
            "digests": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Flows": {
        "type": "object",
        "required": ["flows"],
        "additionalProperties": False,
        "properties": {"flows": {"type": "array", "items": _ref("Flow")}},
    },
}

SCHEMAS["Completion"] = {
    "type": "object",
    "required": ["status"],
    "additionalProperties": False,
    "properties": {
        "status": {"enum": ["completed", "failed", "accepted"]},
        "run_id": {"type": "string"},
        "task": {"type": "string"},
    },
}
SCHEMAS["CompletionError"] = {  # the completion endpoints' own (older) shape
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {"type": "string"}, "status": {"type": "string"}},
}
for _name, _key in (("Workers", "workers"), ("Queues", "queues")):
    SCHEMAS[_name] = {
        "type": "object",
        "required": [_key],
        "additionalProperties": False,
        "properties": {_key: {"type": "array", "items": {"type": "object"}}},
    }
_RUN_ID = _path_param("run_id")
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the run: /v1/runs/{run_id}"}}


def _control(action: str, summary: str) -> dict[str, Any]:
    op = _op(
        summary,
        "control",
        {
            "200": _json(_ref("ControlResult"), "applied by an engine"),
            "202": _json(_ref("ControlResult"), "sent; no engine applied it within ?wait"),
            **_errors(400, 401, 403, 404, 409, 413, 503),
        },
        _ref("ControlRequest"),
        [_RUN_ID, _WAIT],
    )
    op["requestBody"]["required"] = False
    return {"post": op}


def _finish(body: str, summary: str) -> dict[str, Any]:
    return {
        "post": _op(
            summary,
            "control",
            {
                "200": _json(_ref("TaskResult"), "applied by an engine"),
                "202": _json(_ref("TaskResult"), "sent; no engine applied it within ?wait"),
                **_errors(400, 401, 403, 404, 409, 413, 503),
            },
            _ref(body),
            [_RUN_ID, _path_param("task"), _WAIT],
        )
    }


def _token_completion(body: str, summary: str) -> dict[str, Any]:
    """``/v1/complete`` and ``/v1/fail``: authenticated by the task's completion token."""
    why = {
        "400": "malformed JSON, or a result that does not fit the task",
        "401": "no completion token",
        "403": "an invalid token, or one naming no run",
        "404": "the run is gone",
        "409": "already completed, or the run is finished or cancelled",
        "411": "a chunked body",
        "413": "the body is too large",
        "503": "services down, or ACKFLOW_SECRET not set",
    }
    return {
        "post": {
            "summary": summary,
            "security": [{"completionToken": []}],
            "parameters": [_WAIT],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(body)}}},
            "responses": {
                "200": _json(_ref("Completion"), "applied by an engine"),
                "202": _json(_ref("Completion"), "sent; no engine applied it within ?wait"),
                **{c: _json(_ref("CompletionError"), w) for c, w in why.items()},
            },
        }
    }


PATHS: dict[str, Any] = {
    "/v1/complete": _token_completion(
        "CompleteRequest", "Complete the waiting task a completion token names"
    ),
    "/v1/fail": _token_completion("FailRequest", "Fail the waiting task a completion token names"),
    "/v1/runs": {
        "post": _op(
            "Submit a run of a registered flow or of an inline definition (idempotent by run_id)",
            "submit",
            {
                "201": _json(_ref("Submitted"), "submitted (or already submitted alike)", _LOCATION),
                **_errors(400, 401, 403, 409, 413, 503),
            },
            _ref("SubmitRequest"),
        ),
        "get": _op(
            "A page of runs, newest first",
            "read",
            {"200": _json(_ref("RunPage"), "a page of runs"), **_errors(400, 401, 403, 503)},
            params=[
                _query("status", SCHEMAS["RunSummary"]["properties"]["status"], "only runs in this status"),
                _query("flow", {"type": "string"}, "only runs of this flow"),
                _query("since_ms", {"type": "integer", "minimum": 0}, "created at or after (ms)"),
                _query("before", {"type": "integer", "minimum": 0}, "created before (ms): next_before"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "runs a page (50)"),
            ],
        ),
    },
    "/v1/runs/{run_id}": {
        "get": _op(
            "A run: status, inputs, result or error, tasks",
            "read",
            {"200": _json(_ref("Run"), "the run"), **_errors(401, 403, 404, 503)},
            params=[_RUN_ID],
        )
    },
    "/v1/runs/{run_id}/history": {
        "get": _op(
            "A run's transitions, oldest first",
            "read",
            {"200": _json(_ref("History"), "the history"), **_errors(400, 401, 403, 404, 503)},
            params=[_RUN_ID, _query("start", {"type": "integer", "minimum": 0}, "skip this many entries")],
        )
    },
    "/v1/runs/{run_id}/cancel": _control("cancel", "Cancel a PENDING, RUNNING or PAUSED run"),
    "/v1/runs/{run_id}/pause": _control("pause", "Pause a RUNNING run"),
    "/v1/runs/{run_id}/resume": _control("resume", "Resume a PAUSED run"),
    "/v1/runs/{run_id}/retry": _control("retry", "Retry a FAILED run from its failed tasks"),
    "/v1/runs/{run_id}/tasks/{task}/complete": _finish("CompleteRequest", "Complete a waiting task"),
    "/v1/runs/{run_id}/tasks/{task}/fail": _finish("FailRequest", "Fail a waiting task (its retries apply)"),
    "/v1/flows": {
        "get": _op(
            "The registered flows (their latest versions)",
            "read",
            {"200": _json(_ref("Flows"), "the flows"), **_errors(401, 403, 503)},
        )
    },
    "/v1/workers": {
        "get": _op(
            "Workers heard from recently (as ackflow workers --json)",
            "read",
            {"200": _json(_ref("Workers"), "the workers"), **_errors(401, 403, 503)},
        )
    },
    "/v1/queues": {
        "get": _op(
            "The engine, dead and task queues with their counts (as ackflow queues --json)",
            "read",
            {"200": _json(_ref("Queues"), "the queues"), **_errors(401, 403, 503)},
        )
    },
    "/v1/flows/{name}": {
        "get": _op(
            "A registered flow, with the digests of its versions",
            "read",
            {"200": _json(_ref("Flow"), "the flow"), **_errors(401, 403, 404, 503)},
            params=[_path_param("name")],
        )
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ackflow",
            "version": "1",
            "description": "Submit, inspect and control runs; complete waiting tasks. Errors are "
            '{"error": {"type", "message"}}. Scopes: read, submit, control.',
        },
        "paths": {**PATHS, **SCHEDULE_PATHS},
        "components": {
            "schemas": {**SCHEMAS, **SCHEDULE_SCHEMAS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
                "completionToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a lazy task's completion token (or a token field in the body)",
                },
            },
        },
    }
