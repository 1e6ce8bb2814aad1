"""The ``ackflow`` command line: a thin layer over the library.

Nothing connects to a service before a subcommand runs, so ``--help`` always works.

Exit codes: 0 success (a waited-for run succeeded); 1 the run failed, was cancelled or
reverted; 2 bad usage or an invalid flow/input; 3 a service (RabbitMQ, Redis) is
unavailable (or, with ``ACKFLOW_REQUIRE_DURABLE_STORE``, not durable); 4 ``--wait``/``--timeout``
ran out; 5 no such run; 6 the lazy task was already completed (``complete``/``fail``: nothing
changed); 7 the run was lost (its state vanished from Redis while it was active).

Everything the CLI prints goes through `echo` (text) or `echo_json` (data), which hide
completion tokens and URL passwords as the logs and the dashboard do; click's own error
messages and an unexpected traceback are hidden the same way by the `main` group.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import wraps
from importlib.metadata import entry_points
from typing import Any, NoReturn

import click

from runner import logs, states
from runner.client import Client, HistoryEntry, RunInfo
from runner.client.tokens import InvalidToken
from runner.config import Config
from runner.errors import (
    AckflowError,
    AlreadyCompleted,
    BrokerUnavailable,
    CompletionRefused,
    ConfigError,
    EncodeError,
    FlowDefinitionError,
    PayloadTooLargeError,
    RunConflictError,
    RunLost,
    RunNotFound,
    RunStateError,
    StoreNotDurable,
    StoreUnavailable,
    WaitTimeout,
)
from runner.ops.dashboard.values import json_safe
from runner.store.keys import InvalidRunId, check_run_id

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_TIMEOUT, EXIT_NOT_FOUND = 1, 2, 3, 4, 5
EXIT_ALREADY = 6  # a lazy task was already completed: nothing changed
EXIT_LOST = 7  # the run existed and its state vanished from Redis: not a typo, not an expiry


# --- output: every line printed goes through here ----------------------------------------


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    """Print ``text`` with completion tokens and URL passwords hidden (`logs.scrub`)."""
    click.echo(logs.scrub(text), err=err, nl=nl)


def to_json(value: Any, sort_keys: bool = True) -> str:
    """``value`` as one line of JSON, whatever it holds: keys become strings, what JSON has no
    form for its repr (`dashboard.values.json_safe`); every string in it scrubbed."""
    return json.dumps(logs.scrub_data(json_safe(value)), sort_keys=sort_keys)


def echo_json(value: Any, sort_keys: bool = True) -> None:
    echo(to_json(value, sort_keys))


def reveal(text: str) -> None:
    """Print ``text`` unscrubbed: only for a token printed on purpose (``ackflow run``'s lazy task)."""
    click.echo(text)


def _show(e: click.ClickException) -> NoReturn:
    """What click would print for ``e`` (usage, hint, message), scrubbed; then its exit code."""
    shown = io.StringIO()
    e.show(file=shown)
    echo(shown.getvalue(), err=True, nl=False)
    sys.exit(e.exit_code)


class _Main(click.Group):
    """The ``ackflow`` group: what click itself prints (a usage error quoting a value) and the
    traceback of an unexpected error are scrubbed like everything `echo` prints."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as e:
            _show(e)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as e:
            _show(e)
        except Exception as e:  # noqa: BLE001 - an unexpected error: its traceback, scrubbed
            if isinstance(e, OSError) and e.errno == errno.EPIPE:  # stdout closed early: click's
                raise
            echo(traceback.format_exc().rstrip(), err=True)
            sys.exit(EXIT_FAILED)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ackflow errors into a one-line message and a documented exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (
            FlowDefinitionError,
            PayloadTooLargeError,
            RunConflictError,
            ConfigError,
            InvalidRunId,
            EncodeError,
        ) as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except (BrokerUnavailable, StoreUnavailable) as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except StoreNotDurable as e:
            # 3, not 2: the command is right and the store is what is unfit; a supervisor
            # that restarts on 3 picks up a Redis fixed live with CONFIG SET.
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except WaitTimeout as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_TIMEOUT)
        except RunLost as e:  # before RunNotFound, its base
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_LOST)
        except RunNotFound as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_NOT_FOUND)
        except (RunStateError, CompletionRefused, InvalidToken) as e:
            echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except AlreadyCompleted as e:
            echo(f"already completed: {e}", err=True)
            sys.exit(EXIT_ALREADY)
        except AckflowError as e:
            echo(f"error: {type(e).__name__}: {e}", err=True)
            sys.exit(EXIT_FAILED)

    return wrapper


def parse_inputs(pairs: Iterable[str], inputs_json: str | None) -> dict[str, Any]:
    """``k=v`` pairs (v parsed as JSON when it is valid JSON, else a string) over ``--inputs``."""
    out: dict[str, Any] = {}
    if inputs_json:
        try:
            loaded = json.loads(inputs_json)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"not JSON: {e}", param_hint="--inputs") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--inputs")
        out.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--input")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def config_from(ctx: click.Context) -> Config:
    return Config.from_env(**(ctx.obj or {}))


def setup_logging(level: str, fmt: str = "text") -> None:
    from runner import logs

    logs.setup(level, fmt)


def on_sigterm(stop: Callable[[], None]) -> None:
    """Stop gracefully on SIGTERM/SIGINT: finish in-flight work, hand back the rest."""

    def handler(signum: int, frame: Any) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _ts(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def print_history_entry(entry: HistoryEntry) -> None:
    echo(f"{_ts(entry.at_ms)}  {entry.describe()}")


def print_progress(task: str, fraction: float, message: str) -> None:
    echo(f"{_ts(int(datetime.now(tz=UTC).timestamp() * 1000))}  task {task}: {fraction:.0%} {message}")


def print_outcome(info: RunInfo) -> None:
    echo(f"run {info.run_id}: {info.status}")
    if info.result is not None:
        echo("result: " + to_json(info.result))
    if info.error:
        echo(
            f"error in task {info.error.get('task')!r}: {info.error.get('type')}: {info.error.get('message')}"
        )


def exit_for(info: RunInfo) -> None:
    if info.status != states.SUCCESS:
        sys.exit(EXIT_FAILED)


# --- the group -------------------------------------------------------------------------


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--broker-url", envvar="ACKFLOW_BROKER_URL", help="RabbitMQ URL [env ACKFLOW_BROKER_URL].")
@click.option("--redis-url", envvar="ACKFLOW_REDIS_URL", help="Redis URL [env ACKFLOW_REDIS_URL].")
@click.option(
    "--prefix",
    envvar="ACKFLOW_PREFIX",
    help="Deployment prefix for exchange, queues and keys [env ACKFLOW_PREFIX; default ackflow].",
)
@click.option(
    "--log-level",
    envvar="ACKFLOW_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log verbosity.",
)
@click.option(
    "--log-format",
    envvar="ACKFLOW_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="text for people, json (one object per line, with run_id/task/attempt) for machines.",
)
@click.version_option(package_name="ackflow")
@click.pass_context
def main(
    ctx: click.Context,
    broker_url: str | None,
    redis_url: str | None,
    prefix: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """ackflow: durable workflows on RabbitMQ + Redis, or embedded in one process.

    Every option also reads an ACKFLOW_* environment variable. Exit codes: 0 ok, 1 run
    failed, 2 bad input, 3 service unavailable, 4 timed out, 5 no such run, 6 already completed,
    7 run lost.
    """
    ctx.obj = {"broker_url": broker_url, "redis_url": redis_url, "prefix": prefix}
    setup_logging(log_level, log_format)


input_options = [
    click.option(
        "--input",
        "-i",
        "pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="A run input; VALUE is parsed as JSON when it is valid JSON. Repeatable.",
    ),
    click.option("--inputs", "inputs_json", metavar="JSON", help="Run inputs as one JSON object."),
]


def _check_run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--run-id ''`` is refused, not taken as "no id" (which would submit under a random one)."""
    if value is None:
        return None
    try:
        return check_run_id(value)
    except InvalidRunId as e:
        raise click.BadParameter(str(e)) from None


def with_inputs(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(input_options):
        fn = opt(fn)
    return fn


@main.command()
@click.argument("flow_ref", metavar="MODULE:FLOW")
@with_inputs
@click.option("--run-id", callback=_check_run_id, help="Run id (default: random).")
@click.option("--concurrency", "-c", default=4, show_default=True, help="Tasks run at once.")
@click.option("--timeout", "timeout_s", type=float, help="Give up waiting after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the outcome.")
@click.option(
    "--port",
    default=0,
    show_default=True,
    help="Port of the completion endpoint for lazy tasks (0: any free one).",
)
@click.option(
    "--dashboard", is_flag=True, help="Serve the dashboard for this run (prints its URL) while it runs."
)
@handle_errors
def run(
    flow_ref: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    run_id: str | None,
    concurrency: int,
    timeout_s: float | None,
    quiet: bool,
    port: int,
    dashboard: bool,
) -> None:
    """Run a flow in this process (local mode: no broker, no Redis), printing its progress.

    A lazy task prints its completion token and the command that completes it: the process
    serves the HTTP completion endpoint on 127.0.0.1 (--port) while the run waits."""
    from runner.define.loading import load_flow
    from runner.local import LocalRuntime
    from runner.ops.http.api import serve_local

    flow = load_flow(flow_ref)
    inputs = parse_inputs(pairs, inputs_json)
    spec = flow.compile()
    logging.getLogger("ackflow").setLevel(logging.WARNING)
    secret = Config.from_env().secret
    with LocalRuntime(Config(secret=secret), concurrency=concurrency) as rt:
        rid = rt.client.submit(spec, inputs, run_id=run_id)
        if dashboard:
            echo(f"dashboard: {serve_local(rt, port=port)}/runs/{rid}")

        def show(entry: HistoryEntry) -> None:
            if not quiet:
                print_history_entry(entry)
            if entry.new == states.WAITING and entry.old != entry.new:
                url = serve_local(rt, port=port)
                token = rt.client.token_for(rid, entry.scope)
                echo(f"task {entry.scope} is waiting for an outside completion; from another terminal:")
                reveal(f"  ackflow complete {token} --url {url} --result JSON")
                reveal(f"  ackflow fail {token} --url {url} --error MESSAGE")

        info = rt.client.wait(rid, timeout_s, show, None if quiet else print_progress)
    print_outcome(info)
    exit_for(info)


@main.command()
@click.option(
    "--prefetch",
    type=int,
    envvar="ACKFLOW_ENGINE_PREFETCH",
    help="Unacknowledged events held at once [env ACKFLOW_ENGINE_PREFETCH; default 32].",
)
@click.option("--burst", is_flag=True, help="Exit once the engine queue is empty.")
@click.option("--metrics-port", type=int, help="Expose Prometheus metrics on this port (/metrics).")
@click.pass_context
@handle_errors
def engine(ctx: click.Context, prefetch: int | None, burst: bool, metrics_port: int | None) -> None:
    """Run a stateless engine: consume flow events, advance runs (any number may run)."""
    from runner.broker.kombu import KombuBroker
    from runner.engine import Engine
    from runner.engine.durability import StoreGuard
    from runner.store.redis import RedisStore

    cfg = Config.from_env(**ctx.obj, engine_prefetch=prefetch)
    store = RedisStore(cfg)
    store.ping()
    guard = StoreGuard(cfg, store)
    guard.startup()  # logs a WARNING if Redis may lose runs; StoreNotDurable if required
    broker = KombuBroker(cfg, role="engine")
    broker.connect(attempts=5)
    eng = Engine(cfg, store, broker, guard=guard)
    on_sigterm(eng.stop)
    if metrics_port:
        from runner import metrics

        metrics.serve(metrics_port, store=RedisStore(cfg))
    logging.getLogger("ackflow.engine").info("engine started (prefix %s)", cfg.prefix)
    try:
        eng.run(burst=burst)
    finally:
        broker.close()
        store.close()


@main.command()
@click.argument("flow_ref", metavar="MODULE:FLOW")
@with_inputs
@click.option(
    "--run-id",
    callback=_check_run_id,
    help="Run id; submitting the same id again is a no-op (default: random).",
)
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run, printing its progress.")
@click.option("--timeout", "timeout_s", type=float, help="With --wait: give up after this many seconds.")
@click.option(
    "--deadline",
    "deadline_s",
    type=click.FloatRange(min=0, min_open=True),
    help="The run fails with RunTimeout if not finished within this many seconds.",
)
@click.pass_context
@handle_errors
def submit(
    ctx: click.Context,
    flow_ref: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    run_id: str | None,
    wait_: bool,
    timeout_s: float | None,
    deadline_s: float | None,
) -> None:
    """Enqueue a run of MODULE:FLOW (validated first); print its id."""
    from runner.define.loading import load_flow

    flow = load_flow(flow_ref)
    inputs = parse_inputs(pairs, inputs_json)
    client = Client.from_env(**ctx.obj)
    try:
        rid = client.submit(flow, inputs, run_id=run_id, timeout_s=deadline_s)
        echo(rid)
        if wait_:
            info = client.wait(rid, timeout_s, print_history_entry, print_progress)
            print_outcome(info)
            exit_for(info)
    finally:
        client.close()


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's state, its tasks, and its result or error."""
    client = Client.from_env(**ctx.obj)
    try:
        info = client.status(run_id)
    finally:
        client.close()
    if as_json:
        echo_json(_info_dict(info))
        return
    echo(f"run {info.run_id}  flow {info.flow}  {info.status}")
    echo(f"created {_ts(info.created_ms)}  finished {_ts(info.finished_ms)}")
    for t in info.tasks.values():
        dur = f"{t.duration_ms} ms" if t.duration_ms is not None else ""
        if t.progress is not None:
            dur = f"{t.progress[0]:.0%} {t.progress[1]}".rstrip()
        echo(f"  {t.name:<30} {t.status:<10} attempt {t.attempt:<3} {dur}")
        if t.error:
            echo(f"      {t.error['type']}: {t.error['message']}")
        if t.retry_at_ms:
            echo(f"      next attempt at {_ts(t.retry_at_ms)}")
        if t.revert_error:
            echo(f"      revert failed: {t.revert_error['type']}: {t.revert_error['message']}")
    if info.result is not None:
        echo("result: " + to_json(info.result))
    if info.error:
        echo(
            f"error in task {info.error.get('task')!r}: {info.error.get('type')}: {info.error.get('message')}"
        )
        if info.error.get("traceback"):
            echo(info.error["traceback"].rstrip())


def _info_dict(info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "status": info.status,
        "flow": info.flow,
        "created_ms": info.created_ms,
        "finished_ms": info.finished_ms,
        "result": info.result,
        "error": info.error,
        "tasks": {
            n: {
                "status": t.status,
                "attempt": t.attempt,
                "worker": t.worker,
                "duration_ms": t.duration_ms,
                "error": t.error,
                "progress": list(t.progress) if t.progress else None,
                "retry_at_ms": t.retry_at_ms,
                "revert_error": t.revert_error,
            }
            for n, t in info.tasks.items()
        },
    }


def _control_command(action: str, doc: str) -> None:
    @main.command(name=action, help=doc)
    @click.argument("run_id")
    @click.option("--reason", default="", help="Recorded in the run's history.")
    @click.option(
        "--no-wait", is_flag=True, help="Return once the request is enqueued, not once an engine applied it."
    )
    @click.pass_context
    @handle_errors
    def command(ctx: click.Context, run_id: str, reason: str, no_wait: bool) -> None:
        client = Client.from_env(**ctx.obj)
        try:
            status = getattr(client, action)(run_id, reason, wait_s=None if no_wait else 30.0)
        finally:
            client.close()
        echo(f"run {run_id}: {action} requested" if no_wait else f"run {run_id}: {status}")


_control_command("cancel", "Cancel RUN_ID: tasks not yet running are skipped; nothing new starts.")
_control_command("pause", "Pause RUN_ID: running tasks finish; nothing new starts until resume.")
_control_command("resume", "Resume a paused RUN_ID: tasks that became ready meanwhile start.")
_control_command("retry", "Retry a FAILED RUN_ID from its failed tasks, keeping completed results.")


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
    import urllib.error
    import urllib.request

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


@main.command()
@click.argument("token")
@click.option("--result", "result_json", default="null", show_default=True, help="The result, as JSON.")
@click.option(
    "--url", help="Complete through this ackflow serve / ackflow run endpoint instead of RabbitMQ + Redis."
)
@click.option(
    "--wait", "wait_s", default=10.0, show_default=True, help="Seconds to wait for an engine to apply it."
)
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
    client = Client.from_env(**ctx.obj)
    try:
        echo(client.complete(token, result, wait_s=wait_s))
    except ValueError as e:
        echo(f"error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    finally:
        client.close()


@main.command()
@click.argument("token")
@click.option("--error", "message", required=True, help="What went wrong (recorded as the task's error).")
@click.option(
    "--type", "error_type", default="ExternalError", show_default=True, help="The error's type name."
)
@click.option(
    "--url", help="Fail through this ackflow serve / ackflow run endpoint instead of RabbitMQ + Redis."
)
@click.option(
    "--wait", "wait_s", default=10.0, show_default=True, help="Seconds to wait for an engine to apply it."
)
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
    client = Client.from_env(**ctx.obj)
    try:
        echo(client.fail(token, message, error_type=error_type, wait_s=wait_s))
    finally:
        client.close()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="A host name browsers may reach the dashboard by (repeatable; also ACKFLOW_ALLOWED_HOSTS, "
    "comma-separated); 127.0.0.1, localhost, [::1] and --host always are.",
)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, host: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    """Serve the dashboard and the lazy-task completion endpoint (see README).

    Dashboard at /runs (read-only unless ACKFLOW_OPERATOR_TOKEN is set); POST /v1/complete
    and /v1/fail with "Authorization: Bearer <token>" (needs ACKFLOW_SECRET); GET /healthz."""
    import os

    from runner.engine.durability import StoreGuard
    from runner.ops.http.api import make_server
    from runner.store.redis import RedisStore

    cfg = config_from(ctx)
    store = RedisStore(cfg)
    try:  # logs a WARNING if Redis may lose runs; StoreNotDurable if required
        StoreGuard(cfg, store).startup()
    finally:
        store.close()
    env_hosts = [h for h in os.environ.get("ACKFLOW_ALLOWED_HOSTS", "").split(",") if h.strip()]
    server = make_server(
        host,
        port,
        lambda: Client.from_env(**(ctx.obj or {})),
        cfg.max_payload_bytes,
        operator_token=cfg.operator_token,
        completions=bool(cfg.secret),
        allowed_hosts=[*allow_hosts, *env_hosts],
    )
    on_sigterm(lambda: threading.Thread(target=server.shutdown, daemon=True).start())
    log = logging.getLogger("ackflow.http")
    log.info(
        "dashboard on %s/runs (%s)", server.url, "operators can log in" if cfg.operator_token else "read-only"
    )
    if not cfg.secret:
        log.warning("ACKFLOW_SECRET is not set: the lazy-task completion endpoint answers 503")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.pool.close()


main.add_command(serve, name="dashboard")


@main.command(name="list")
@click.option("--status", "status_", type=click.Choice(states.RUN_STATES), help="Only runs in this state.")
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def list_(ctx: click.Context, status_: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    client = Client.from_env(**ctx.obj)
    try:
        runs = client.list(status_, limit)
    finally:
        client.close()
    for r in runs:
        if as_json:
            echo_json(
                {
                    "run_id": r.run_id,
                    "status": r.status,
                    "flow": r.flow,
                    "created_ms": r.created_ms,
                    "finished_ms": r.finished_ms,
                },
                sort_keys=False,
            )
        else:
            echo(f"{r.run_id:<34} {r.status:<10} {r.flow:<24} {_ts(r.created_ms)}")


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def history(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Every transition applied to a run, in order, with refused (fenced) events."""
    client = Client.from_env(**ctx.obj)
    try:
        entries = client.history(run_id)
    finally:
        client.close()
    for e in entries:
        if as_json:
            echo_json(
                {
                    "at_ms": e.at_ms,
                    "event": e.event,
                    "kind": e.kind,
                    "scope": e.scope,
                    "from": e.old,
                    "to": e.new,
                    "attempt": e.attempt,
                    **e.extra,
                },
                sort_keys=False,
            )
        else:
            print_history_entry(e)


@main.command()
@click.option("--queue", "-Q", "queues", multiple=True, help="Also declare this task queue. Repeatable.")
@click.option("--check", is_flag=True, help="Only check that the queues exist; declare nothing.")
@click.pass_context
@handle_errors
def topology(ctx: click.Context, queues: tuple[str, ...], check: bool) -> None:
    """Declare (or --check) the exchange and queues on RabbitMQ and print them with depths."""
    from runner.broker import DEAD_QUEUE, ENGINE_QUEUE, task_queue
    from runner.broker.kombu import KombuBroker, queue_arguments

    cfg = config_from(ctx)
    broker = KombuBroker(cfg)
    logical = [ENGINE_QUEUE, DEAD_QUEUE, *(task_queue(q) for q in queues or ("default",))]
    try:
        if not check:
            broker.connect(attempts=3)
            broker.declare(logical)
        missing = 0
        for q in logical:
            try:
                depth = broker.depth(q)
                echo(f"{broker.physical(q):<40} ready={depth:<8} {queue_arguments(cfg, q)}")
            except Exception as e:  # noqa: BLE001 - a passive declare of a missing queue
                missing += 1
                echo(f"{broker.physical(q):<40} MISSING ({e})")
                broker.close()
        if missing:
            sys.exit(EXIT_FAILED)
    finally:
        broker.close()


@main.command()
@click.option("--repeat", default=3, show_default=True, help="Runs of each case (median, min-max).")
@click.option("--quick", is_flag=True, help="Smaller workloads, for a first look.")
@click.option("--out", default="bench-report.json", show_default=True, help="Where the JSON report goes.")
@click.pass_context
@handle_errors
def bench(ctx: click.Context, repeat: int, quick: bool, out: str) -> None:
    """Benchmark against the configured RabbitMQ + Redis and print a table."""
    from runner.ops import bench as b

    b.main(config_from(ctx), repeat, quick, out)


@main.group()
def dlq() -> None:
    """Dead letters: list, show, replay, purge."""


def _dlq_broker(ctx: click.Context) -> Any:
    from runner.broker.kombu import KombuBroker

    broker = KombuBroker(config_from(ctx))
    broker.connect(attempts=3)
    return broker


@dlq.command(name="list")
@click.option("--limit", default=100, show_default=True, help="At most this many, oldest first.")
@click.pass_context
@handle_errors
def dlq_list(ctx: click.Context, limit: int) -> None:
    """List dead letters with their reason, original queue and delivery count."""
    from runner import dlq as dead

    letters = dead.list_dead(_dlq_broker(ctx), limit)
    for dl in letters:
        echo(f"{dl.id:<48} {dl.queue:<16} deliveries={dl.delivery_count:<3} {dl.reason}")
    echo(f"{len(letters)} dead letter(s)", err=True)


@dlq.command(name="show")
@click.argument("message_id")
@click.pass_context
@handle_errors
def dlq_show(ctx: click.Context, message_id: str) -> None:
    """Show one dead letter in full."""
    from runner import dlq as dead

    dl = dead.show(_dlq_broker(ctx), message_id)
    echo(f"id:         {dl.id}\nqueue:      {dl.queue}\ndeliveries: {dl.delivery_count}")
    echo(f"reason:     {dl.reason}\nbody:       {dl.describe_body()}")


@dlq.command(name="replay")
@click.argument("message_id")
@click.pass_context
@handle_errors
def dlq_replay(ctx: click.Context, message_id: str) -> None:
    """Send a dead letter back to the queue it came from."""
    from runner import dlq as dead

    dl = dead.replay(_dlq_broker(ctx), message_id)
    echo(f"replayed {dl.id} to {dl.queue}")


@dlq.command(name="purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def dlq_purge(ctx: click.Context, yes: bool) -> None:
    """Delete every dead letter."""
    from runner import dlq as dead

    if not yes:
        click.confirm("Delete every dead letter?", abort=True)
    echo(f"purged {dead.purge(_dlq_broker(ctx))} dead letter(s)")


def load_plugins() -> click.Group:
    """Add the subcommands other packages register under the ``ackflow.commands`` entry point."""
    from runner.plugins import LazyCommand  # each is imported only when it runs

    for ep in entry_points(group="ackflow.commands"):
        if ep.name not in main.commands:
            main.add_command(LazyCommand(ep), ep.name)
    return main


def cli() -> None:
    """The ``ackflow`` console script."""
    load_plugins()()


if __name__ == "__main__":  # pragma: no cover
    cli()
