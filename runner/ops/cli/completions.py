"""``ackflow complete|fail``: finish a waiting (lazy) task from outside, by its token.

Through RabbitMQ + Redis (the token is checked here, with ``ACKFLOW_SECRET``), or with
``--url`` through an ``ackflow serve`` / ``ackflow run`` HTTP endpoint (checked there).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

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
        if e.code == 409 and answer.get("status") == "already completed":
            echo(f"already completed: {message}", err=True)
            sys.exit(EXIT_ALREADY)
        echo(f"error: {message}", err=True)
        sys.exit(code.get(e.code, EXIT_USAGE))
    except (urllib.error.URLError, OSError) as e:
        echo(f"error: cannot reach {url}: {e}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def _need_secret(ctx: click.Context) -> None:
    """Completing through RabbitMQ + Redis checks the token here: without the secret, say so."""
    if not config_from(ctx).secret:
        raise ConfigError(
            "ACKFLOW_SECRET is not set: completion tokens are checked with the secret the workers "
            "sign them with (set the same ACKFLOW_SECRET here, or pass --url to go through "
            "ackflow serve)"
        )


@click.command()
@click.argument("token")
@click.option("--result", "result_json", default="null", show_default=True, help="The result, as JSON.")
@click.option("--url", help=_URL_HELP.format("Complete"))
@click.option("--wait", "wait_s", default=10.0, show_default=True, help=_WAIT_HELP)
@click.pass_context
@handle_errors
def complete(ctx: click.Context, token: str, result_json: str, url: str | None, wait_s: float) -> None:
    """Complete the waiting (lazy) task TOKEN names with --result; prints completed or accepted.

    Exit 6 if it was already completed, 2 if the token is invalid, the result does not fit
    the task, or the run is finished or cancelled — and then nothing changed."""
    try:
        result = json.loads(result_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--result") from None
    if url:
        _post(url, "/v1/complete", token, {"result": result}, wait_s)
        return
    _need_secret(ctx)
    with client_from(ctx) as client:
        try:
            echo(client.complete(token, result, wait_s=wait_s))
        except ValueError as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)


@click.command()
@click.argument("token")
@click.option("--error", "message", required=True, help="What went wrong (recorded as the task's error).")
@click.option(
    "--type", "error_type", default="ExternalError", show_default=True, help="The error's type name."
)
@click.option("--url", help=_URL_HELP.format("Fail"))
@click.option("--wait", "wait_s", default=10.0, show_default=True, help=_WAIT_HELP)
@click.pass_context
@handle_errors
def fail(
    ctx: click.Context, token: str, message: str, error_type: str, url: str | None, wait_s: float
) -> None:
    """Fail the waiting (lazy) task TOKEN names; its retry policy applies."""
    if url:
        _post(url, "/v1/fail", token, {"error": message, "type": error_type}, wait_s)
        return
    _need_secret(ctx)
    with client_from(ctx) as client:
        echo(client.fail(token, message, error_type=error_type, wait_s=wait_s))


COMMANDS = (complete, fail)
