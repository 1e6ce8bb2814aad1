"""``ackflow complete|fail``: finish a waiting (lazy) task from outside, by its token, or (an
operator) by ``--run RUN --task TASK``.

Through RabbitMQ + Redis (the token is checked here, or minted for the run and task, with
``ACKFLOW_SECRET``), or with ``--url`` through an ``ackflow serve`` / ``ackflow run`` HTTP
endpoint: a token is checked there (``/v1/complete``); by run and task, the REST API
(``/v1/runs/RUN/tasks/TASK/complete``) takes ``ACKFLOW_API_TOKEN`` with the control scope.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import click

from runner.errors import ConfigError
from runner.ops.cli.common import (
    EXIT_ALREADY,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    client_from,
    config_from,
    echo,
    handle_errors,
)

_URL_HELP = "{} through this ackflow serve / ackflow run endpoint instead of RabbitMQ + Redis."
_WAIT_HELP = "Seconds to wait for an engine to apply it."


def _reply(raw: bytes) -> dict[str, Any] | None:
    """An endpoint's JSON object reply; None if it is not one (not an ackflow endpoint)."""
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:  # not JSON, or not UTF-8
        return None
    return answer if isinstance(answer, dict) else None


def _not_json(url: str, status: int, raw: bytes) -> str:
    shown = raw[:200].decode("utf-8", "replace").strip()
    return (
        f"error: {url} answered HTTP {status} with a body that is not an ackflow JSON reply "
        f"({shown!r}{'…' if len(raw) > 200 else ''}): is --url an ackflow serve or ackflow run address?"
    )


def _post(url: str, path: str, token: str, body: dict[str, Any], wait_s: float) -> None:
    """Complete through an ``ackflow serve`` (or ``ackflow run``) endpoint."""
    req = urllib.request.Request(
        f"{url.rstrip('/')}{path}?wait={wait_s}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=wait_s + 10) as resp:
            raw = resp.read()
            answer = _reply(raw)
            if answer is None:  # it may or may not have been applied: not a success
                echo(_not_json(url, resp.status, raw), err=True)
                sys.exit(EXIT_FAILED)
            echo(str(answer.get("status", "ok")))
            return
    except urllib.error.HTTPError as e:
        raw = e.read()
        answer = _reply(raw)
        code = {404: EXIT_NOT_FOUND, 502: EXIT_UNAVAILABLE, 503: EXIT_UNAVAILABLE, 504: EXIT_UNAVAILABLE}
        if answer is None:
            echo(_not_json(url, e.code, raw), err=True)
            sys.exit(code.get(e.code, EXIT_FAILED))
        message = answer.get("error", e.reason)
        kind = message.get("type") if isinstance(message, dict) else None
        if isinstance(message, dict):  # the REST API's shape: {"type", "message"}
            message = message.get("message", e.reason)
        if e.code == 409 and (answer.get("status") == "already completed" or kind == "already_completed"):
            echo(f"already completed: {message}", err=True)
            sys.exit(EXIT_ALREADY)
        echo(f"error: {message}", err=True)
        sys.exit(code.get(e.code, EXIT_USAGE))
    except (urllib.error.URLError, OSError) as e:
        echo(f"error: cannot reach {url}: {e}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def _target(token: str | None, run_id: str | None, task: str | None) -> None:
    """Either TOKEN, or --run and --task: say so otherwise."""
    if token and (run_id or task):
        raise click.UsageError("give either TOKEN or --run and --task, not both")
    if not token and not (run_id and task):
        raise click.UsageError("give the task's TOKEN, or --run RUN --task TASK")


def _by_task(ctx: click.Context, run_id: str, task: str, outcome: str) -> tuple[str, str]:
    """The REST API's path for a run's task, and the API token to send."""
    api_token = config_from(ctx).api_token
    if not api_token:
        raise ConfigError(
            "ACKFLOW_API_TOKEN is not set: completing by --run and --task through --url goes through "
            "the REST API, which needs an API token with the control scope"
        )
    return f"/v1/runs/{quote(run_id, safe=':')}/tasks/{quote(task, safe='')}/{outcome}", api_token


def _need_secret(ctx: click.Context) -> None:
    """Completing through RabbitMQ + Redis checks the token here: without the secret, say so."""
    if not config_from(ctx).secret:
        raise ConfigError(
            "ACKFLOW_SECRET is not set: completion tokens are checked with the secret the workers "
            "sign them with (set the same ACKFLOW_SECRET here, or pass --url to go through "
            "ackflow serve)"
        )


_RUN_HELP = "The run of the waiting task (with --task), instead of its TOKEN."
_TASK_HELP = "The waiting task's name (with --run)."


@click.command()
@click.argument("token", required=False)
@click.option("--run", "run_id", help=_RUN_HELP)
@click.option("--task", help=_TASK_HELP)
@click.option("--result", "result_json", default="null", show_default=True, help="The result, as JSON.")
@click.option("--url", help=_URL_HELP.format("Complete"))
@click.option("--wait", "wait_s", default=10.0, show_default=True, help=_WAIT_HELP)
@click.pass_context
@handle_errors
def complete(
    ctx: click.Context,
    token: str | None,
    run_id: str | None,
    task: str | None,
    result_json: str,
    url: str | None,
    wait_s: float,
) -> None:
    """Complete the waiting (lazy) task TOKEN names, or --run RUN --task TASK, with --result;
    prints completed or accepted.

    By run and task, an operator needs ACKFLOW_SECRET (or, with --url, ACKFLOW_API_TOKEN).
    Exit 6 if it was already completed, 2 if the token is invalid, the result does not fit
    the task, or the run is finished or cancelled — and then nothing changed; 5 if the run
    does not exist."""
    _target(token, run_id, task)
    try:
        result = json.loads(result_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--result") from None
    if url:
        if token:
            _post(url, "/v1/complete", token, {"result": result}, wait_s)
        else:
            assert run_id and task
            _post(url, *_by_task(ctx, run_id, task, "complete"), {"result": result}, wait_s)
        return
    _need_secret(ctx)
    with client_from(ctx) as client:
        try:
            token = token or client.token_for(str(run_id), str(task))
            echo(client.complete(token, result, wait_s=wait_s))
        except ValueError as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)


@click.command()
@click.argument("token", required=False)
@click.option("--run", "run_id", help=_RUN_HELP)
@click.option("--task", help=_TASK_HELP)
@click.option("--error", "message", required=True, help="What went wrong (recorded as the task's error).")
@click.option(
    "--type", "error_type", default="ExternalError", show_default=True, help="The error's type name."
)
@click.option("--url", help=_URL_HELP.format("Fail"))
@click.option("--wait", "wait_s", default=10.0, show_default=True, help=_WAIT_HELP)
@click.pass_context
@handle_errors
def fail(
    ctx: click.Context,
    token: str | None,
    run_id: str | None,
    task: str | None,
    message: str,
    error_type: str,
    url: str | None,
    wait_s: float,
) -> None:
    """Fail the waiting (lazy) task TOKEN names, or --run RUN --task TASK; its retry policy
    applies."""
    _target(token, run_id, task)
    body = {"error": message, "type": error_type}
    if url:
        if token:
            _post(url, "/v1/fail", token, body, wait_s)
        else:
            assert run_id and task
            _post(url, *_by_task(ctx, run_id, task, "fail"), body, wait_s)
        return
    _need_secret(ctx)
    with client_from(ctx) as client:
        token = token or client.token_for(str(run_id), str(task))
        echo(client.fail(token, message, error_type=error_type, wait_s=wait_s))


COMMANDS = (complete, fail)
