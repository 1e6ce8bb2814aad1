"""What every ``ackflow`` command shares: the output boundary, exit codes, errors, inputs, a client.

Everything the CLI prints goes through `echo` (text) or `echo_json` (data), which hide
completion tokens and URL passwords as the logs and the dashboard do (`runner.logs.scrub`);
click's own error messages and an unexpected traceback are hidden the same way by the `Main`
group. `handle_errors` turns ackflow's errors into one line and a documented exit code.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn

import click

from runner import logs, states
from runner.client import Client, RunInfo
from runner.client.render import json_safe
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
    ScheduleConflict,
    ScheduleError,
    ScheduleNotFound,
    StoreNotDurable,
    StoreUnavailable,
    WaitTimeout,
)
from runner.store.keys import InvalidRunId, check_run_id

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_TIMEOUT, EXIT_NOT_FOUND = 1, 2, 3, 4, 5
EXIT_ALREADY = 6  # a lazy task was already completed: nothing changed
EXIT_LOST = 7  # the run existed and its state vanished from Redis: not a typo, not an expiry


# --- output: every line printed goes through here ----------------------------------------


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    """Print ``text`` with completion tokens and URL passwords hidden (`logs.scrub`)."""
    click.echo(logs.scrub(text), err=err, nl=nl)


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        echo(line)


def to_json(value: Any, sort_keys: bool = True) -> str:
    """``value`` as one line of JSON, whatever it holds: keys become strings, what JSON has no
    form for its repr (`runner.client.render.json_safe`); every string in it scrubbed."""
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


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _relog(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--log-level``/``--log-format`` given after the subcommand: log as they say from now."""
    if value is None or param.name is None:
        return
    root = ctx.find_root()
    root.params[param.name] = value
    logs.setup(root.params.get("log_level") or "info", root.params.get("log_format") or "text")


def accept_log_options(cmd: click.Command) -> None:
    """Let ``cmd`` (and, for a group, each of its subcommands) take the group's
    ``--log-level`` and ``--log-format`` too, after its name: ``ackflow worker m --log-format json``."""
    names = {p.name for p in cmd.params}
    for name, choices in (("log_level", LOG_LEVELS), ("log_format", LOG_FORMATS)):
        if name not in names:
            flag = "--" + name.replace("_", "-")
            cmd.params.append(
                click.Option(
                    [flag, name], type=click.Choice(choices), expose_value=False, callback=_relog, hidden=True
                )
            )
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            accept_log_options(sub)


class Main(click.Group):
    """The ``ackflow`` group: what click itself prints (a usage error quoting a value) and the
    traceback of an unexpected error are scrubbed like everything `echo` prints; each
    subcommand accepts the group's log options after its name too (`accept_log_options`)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None:
            real = getattr(cmd, "real", None)  # a plugin's command (`LazyCommand`), loaded now
            accept_log_options(real() if callable(real) else cmd)
        return name, cmd, rest

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


# --- errors -> exit codes ----------------------------------------------------------------

# Which exit code each ackflow error means, most specific first (a subclass before its base).
EXIT_FOR: tuple[tuple[tuple[type[AckflowError], ...], int, str], ...] = (
    (
        (FlowDefinitionError, PayloadTooLargeError, RunConflictError, ConfigError, InvalidRunId, EncodeError),
        EXIT_USAGE,
        "error",
    ),
    # StoreNotDurable: 3, not 2 — the command is right and the store is what is unfit; a
    # supervisor that restarts on 3 picks up a Redis fixed live with CONFIG SET.
    ((BrokerUnavailable, StoreUnavailable, StoreNotDurable), EXIT_UNAVAILABLE, "error"),
    ((WaitTimeout,), EXIT_TIMEOUT, "error"),
    ((RunLost,), EXIT_LOST, "error"),  # before RunNotFound, its base
    ((RunNotFound,), EXIT_NOT_FOUND, "error"),
    ((RunStateError, CompletionRefused, InvalidToken), EXIT_USAGE, "error"),
    ((AlreadyCompleted,), EXIT_ALREADY, "already completed"),
    ((ScheduleError, ScheduleConflict), EXIT_USAGE, "error"),
    ((ScheduleNotFound,), EXIT_NOT_FOUND, "error"),
)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ackflow errors into a one-line message and a documented exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AckflowError as e:
            for types, code, label in EXIT_FOR:
                if isinstance(e, types):
                    echo(f"{label}: {e}", err=True)
                    sys.exit(code)
            echo(f"error: {type(e).__name__}: {e}", err=True)
            sys.exit(EXIT_FAILED)

    return wrapper


def exit_for(info: RunInfo) -> None:
    if info.status != states.SUCCESS:
        sys.exit(EXIT_FAILED)


# --- inputs, configuration, clients ---------------------------------------------------------


def parse_inputs(pairs: Iterable[str], inputs_json: str | None, text: Container[str] = ()) -> dict[str, Any]:
    """``k=v`` pairs (v parsed as JSON when it is valid JSON, else a string) over ``--inputs``;
    an input named in ``text`` (its parameters are all type-hinted ``str``) keeps v as
    typed: ``--input zip=01234`` is the string "01234", not an error or the number 1234."""
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
        if key in text:
            out[key] = value
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


_INPUT_OPTIONS = [
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


def with_inputs(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_INPUT_OPTIONS):
        fn = opt(fn)
    return fn


def check_run_id_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--run-id ''`` is refused, not taken as "no id" (which would submit under a random one)."""
    if value is None:
        return None
    try:
        return check_run_id(value)
    except InvalidRunId as e:
        raise click.BadParameter(str(e)) from None


def config_from(ctx: click.Context) -> Config:
    return Config.from_env(**(ctx.obj or {}))


@contextmanager
def client_from(ctx: click.Context) -> Iterator[Client]:
    """A client for the configured RabbitMQ + Redis, closed when the command is done with it."""
    client = Client.from_env(**(ctx.obj or {}))
    try:
        yield client
    finally:
        client.close()


def on_sigterm(stop: Callable[[], None]) -> None:
    """Stop gracefully on SIGTERM/SIGINT: finish in-flight work, hand back the rest."""

    def handler(signum: int, frame: Any) -> None:
        logging.getLogger("ackflow").info(
            "%s: stopping gracefully (finishing what runs)", signal.Signals(signum).name
        )
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
