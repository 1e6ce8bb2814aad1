"""The schedules' part of the OpenAPI document (`runner.ops.http.openapi`;
the routes: `runner.ops.http.rest_schedules`)."""

from __future__ import annotations

from typing import Any

from runner.ops.http.openapi_base import _errors, _json, _op, _path_param, _ref

_STR_OR_NULL = {"type": ["string", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}
_DURATION = {"type": ["string", "integer"], "description": "seconds, or a duration: 90s, 10m, 1h30m, 1d"}
_OVERLAP = {"enum": ["skip", "allow", "cancel_previous"]}
_CATCHUP = {"enum": ["none", "latest", "all"]}

SCHEDULE_SCHEMAS: dict[str, Any] = {
    "ScheduleRequest": {
        "type": "object",
        "required": ["name", "flow"],
        "additionalProperties": False,
        "description": "exactly one of cron, every, at, in",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,80}$"},
            "flow": {"type": "string", "description": "a registered flow's name"},
            "inputs": {"type": "object"},
            "cron": {"type": "string", "description": "5 fields, or 6 with seconds last"},
            "tz": {"type": "string", "description": "the IANA zone cron is read in (UTC)"},
            "every": _DURATION,
            "at": {"type": ["string", "integer"], "description": "once: ISO 8601 with a zone, or epoch ms"},
            "in": _DURATION,
            "version": {"type": "string", "description": "pin a version (digest or its prefix)"},
            "overlap": _OVERLAP,
            "catchup": _CATCHUP,
            "catchup_window": _DURATION,
            "run_id": {"type": "string", "description": "a one-shot's run id (at or in only)"},
        },
    },
    "Schedule": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "flow", "state", "paused", "next_ms", "next", "last_run", "fired"],
        "properties": {
            "name": {"type": "string"},
            "flow": {"type": "string"},
            "version": _STR_OR_NULL,
            "cron": _STR_OR_NULL,
            "tz": {"type": "string"},
            "every_s": _INT_OR_NULL,
            "at": _STR_OR_NULL,
            "inputs": {"type": "object"},
            "overlap": _OVERLAP,
            "catchup": _CATCHUP,
            "catchup_window_s": _INT_OR_NULL,
            "run_id": _STR_OR_NULL,
            "created_ms": {"type": "integer"},
            "state": {"enum": ["active", "paused", "done"]},
            "paused": {"type": "boolean"},
            "next_ms": {**_INT_OR_NULL, "description": "the next firing (epoch ms)"},
            "next": {**_STR_OR_NULL, "description": "the next firing, ISO 8601 UTC"},
            "last_ms": {**_INT_OR_NULL, "description": "the scheduled time of the last run started"},
            "last_run": {**_STR_OR_NULL, "description": "its run id: <name>:<time>"},
            "fired": {"type": "integer"},
            "note": {"type": "string", "description": "why the last firing started no run, if so"},
        },
    },
    "Schedules": {
        "type": "object",
        "required": ["schedules"],
        "additionalProperties": False,
        "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
    },
    "ScheduleDeleted": {
        "type": "object",
        "required": ["name", "deleted"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "deleted": {"type": "boolean"}},
    },
}

_NAME = _path_param("name")
_WHERE = {"Location": {"schema": {"type": "string"}, "description": "/v1/schedules/{name}"}}


def _change(action: str, summary: str) -> dict[str, Any]:
    return {
        "post": _op(
            summary,
            "control",
            {"200": _json(_ref("Schedule"), f"the schedule, {action}d"), **_errors(401, 403, 404, 503)},
            params=[_NAME],
        )
    }


SCHEDULE_PATHS: dict[str, Any] = {
    "/v1/schedules": {
        "get": _op(
            "Every schedule: when it fires, its next firing, state and last run",
            "read",
            {"200": _json(_ref("Schedules"), "the schedules"), **_errors(401, 403, 503)},
        ),
        "post": _op(
            "Add a schedule of a registered flow: cron, every, or once (at / in)",
            "submit",
            {
                "201": _json(_ref("Schedule"), "added", _WHERE),
                **_errors(400, 401, 403, 409, 413, 503),
            },
            _ref("ScheduleRequest"),
        ),
    },
    "/v1/schedules/{name}": {
        "get": _op(
            "One schedule",
            "read",
            {"200": _json(_ref("Schedule"), "the schedule"), **_errors(401, 403, 404, 503)},
            params=[_NAME],
        ),
        "delete": _op(
            "Forget a schedule (its runs stay)",
            "control",
            {"200": _json(_ref("ScheduleDeleted"), "deleted"), **_errors(401, 403, 404, 503)},
            params=[_NAME],
        ),
    },
    "/v1/schedules/{name}/pause": _change("pause", "Pause a schedule: nothing fires until resumed"),
    "/v1/schedules/{name}/resume": _change("resume", "Resume a schedule from its next time after now"),
}
