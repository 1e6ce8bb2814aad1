"""``ackflow run|submit|status|list|history|cancel|pause|resume|retry``: start runs, read them, control them."""

from __future__ import annotations

import logging

import click

from runner import states
from runner.client import Client, HistoryEntry, flows
from runner.client.client import MAX_DEADLINE_S
from runner.client.render import (
    history_dict,
    history_line,
    outcome_lines,
    progress_line,
    run_dict,
    status_lines,
    summary_dict,
    timestamp,
)
from runner.config import Config
from runner.define.input_types import text_inputs
from runner.define.spec import FlowSpec
from runner.errors import FlowDefinitionError, UnknownFlowError
from runner.ops.cli.common import (
    check_run_id_option,
    client_from,
    echo,
    echo_json,
    echo_lines,
    exit_for,
    handle_errors,
    parse_inputs,
    reveal,
    with_inputs,
)
from runner.ops.fleet import waiting_unconsumed


def print_history_entry(entry: HistoryEntry) -> None:
    echo(history_line(entry))


def print_progress(task: str, fraction: float, message: str) -> None:
    echo(progress_line(task, fraction, message))


@click.command()
@click.argument("flow_ref", metavar="MODULE:FLOW")
@with_inputs
@click.option("--run-id", callback=check_run_id_option, help="Run id (default: random).")
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
@click.pass_context
@handle_errors
def run(
    ctx: click.Context,
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
    from runner.ops.http.app import serve_local

    spec = load_flow(flow_ref).compile()
    inputs = parse_inputs(pairs, inputs_json, text_inputs(spec.input_kinds))
    logging.getLogger("ackflow").setLevel(logging.WARNING)
    for shown_here in ("ackflow.worker.tasks", "ackflow.engine.runs"):  # the progress says it all
        logging.getLogger(shown_here).setLevel(logging.CRITICAL)
    secret = Config.from_env(config_file=(ctx.obj or {}).get("config_file")).secret
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
    echo_lines(outcome_lines(info))
    exit_for(info)


@click.command()
@click.argument("flow_ref", metavar="MODULE:FLOW|NAME", required=False)
@click.option(
    "--definition",
    metavar="FILE",
    help="Instead of a flow: a flow document (YAML or JSON), compiled against the task catalogue "
    "workers record; nothing is imported.",
)
@with_inputs
@click.option(
    "--run-id",
    callback=check_run_id_option,
    help="Run id; submitting the same id again is a no-op (default: random).",
)
@click.option("--version", help="With a flow NAME: the registered version (digest, or its start) to run.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run, printing its progress.")
@click.option("--timeout", "timeout_s", type=float, help="With --wait: give up after this many seconds.")
@click.option(
    "--deadline",
    "deadline_s",
    type=click.FloatRange(min=0, min_open=True, max=MAX_DEADLINE_S),
    help="The run fails with RunTimeout if not finished within this many seconds.",
)
@click.option(
    "--at", "at", metavar="TIME", help="Start the run at TIME (ISO 8601 with a zone: 2027-01-01T00:00Z)."
)
@click.option("--in", "in_", metavar="DURATION", help="Start the run after DURATION (90s, 10m, 2h).")
@click.pass_context
@handle_errors
def submit(
    ctx: click.Context,
    flow_ref: str | None,
    definition: str | None,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    run_id: str | None,
    version: str | None,
    wait_: bool,
    timeout_s: float | None,
    deadline_s: float | None,
    at: str | None,
    in_: str | None,
) -> None:
    """Enqueue a run of MODULE:FLOW, or of a registered flow by NAME (`ackflow flows`),
    validated first; print its id. With --at or --in the engines start it then (a one-shot
    schedule, `ackflow schedule list`). --definition FILE runs a flow document instead (as
    ``POST /v1/runs`` with ``"definition"``)."""
    from runner.define.loading import load_flow

    if (flow_ref is None) == (definition is None):
        raise click.UsageError("give a flow (MODULE:FLOW or NAME) or --definition FILE, one of them")
    if definition is not None and (version or at or in_):
        raise click.BadParameter("--version, --at and --in need a flow NAME", param_hint="--definition")
    if flow_ref is not None and (at is not None or in_ is not None):
        _submit_later(ctx, flow_ref, pairs, inputs_json, run_id, version, (wait_, deadline_s), at, in_)
        return
    with client_from(ctx) as client:
        ref = flow_ref or ""
        if definition is not None:
            spec = _from_catalogue(client, definition)
        elif ":" in ref:
            if version:
                raise click.BadParameter(
                    "--version applies to a flow submitted by name", param_hint="--version"
                )
            spec = load_flow(ref).compile()
        else:
            try:
                spec = flows.get(client.store, ref, version)
            except UnknownFlowError as e:
                raise FlowDefinitionError(f"{e} (or write MODULE:FLOW to import the flow)") from None
        inputs = parse_inputs(pairs, inputs_json, text_inputs(spec.input_kinds))
        rid = client.submit(spec, inputs, run_id=run_id, timeout_s=deadline_s)
        echo(rid)
        if wait_:
            info = client.wait(rid, timeout_s, print_history_entry, print_progress)
            echo_lines(outcome_lines(info))
            exit_for(info)


def _from_catalogue(client: Client, path: str) -> FlowSpec:
    """The spec of the flow document at ``path``, compiled against the task catalogue."""
    from pathlib import Path

    from runner.client import catalogue

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise FlowDefinitionError(f"{path}: {e.strerror or e}") from None
    return catalogue.compile_definition(client.store, text, source=path)


def _submit_later(
    ctx: click.Context,
    flow_ref: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    run_id: str | None,
    version: str | None,
    refused: tuple[bool, float | None],
    at: str | None,
    in_: str | None,
) -> None:
    """``submit --at/--in``: a one-shot schedule named ``once-...`` whose run has the id."""
    import uuid

    if ":" in flow_ref:
        raise click.BadParameter("--at and --in submit a registered flow by NAME", param_hint="FLOW")
    if any(refused):
        raise click.BadParameter("--at and --in go without --wait and --deadline", param_hint="--at/--in")
    rid = run_id or uuid.uuid4().hex
    with client_from(ctx) as client:
        spec = flows.get(client.store, flow_ref, version)
        inputs = parse_inputs(pairs, inputs_json, text_inputs(spec.input_kinds))
        name = f"once-{uuid.uuid4().hex[:16]}"
        s = client.schedules.add(name, flow_ref, inputs, at=at, in_=in_, version=version, run_id=rid)
    echo(rid)
    echo(f"starts at {timestamp(s.next_ms or 0, precise=False)} UTC (schedule {name})", err=True)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's state, its tasks, and its result or error; and what of it waits on a queue
    that nobody consumes."""
    with client_from(ctx) as client:
        info = client.status(run_id)
        waits = waiting_unconsumed(client, info)
    if as_json:
        echo_json({**run_dict(info), "unconsumed": [w.as_json() for w in waits]})
    else:
        echo_lines(status_lines(info))
        for w in waits:
            echo(f"warning: {w.describe()}")


@click.command()
@click.argument("run_id")
@click.option("--timeout", "timeout_s", type=float, help="Give up after this many seconds (exit 4).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the outcome.")
@click.pass_context
@handle_errors
def wait(ctx: click.Context, run_id: str, timeout_s: float | None, quiet: bool) -> None:
    """Wait for RUN_ID to finish, printing its transitions from the start (unless --quiet);
    exit with the run's outcome (0 success, 1 failed or cancelled)."""
    with client_from(ctx) as client:
        info = client.wait(
            run_id, timeout_s, None if quiet else print_history_entry, None if quiet else print_progress
        )
    echo_lines(outcome_lines(info))
    exit_for(info)


@click.command(name="list")
@click.option(
    "--status",
    "status_",
    type=click.Choice(states.RUN_STATES, case_sensitive=False),
    help="Only runs in this state.",
)
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def list_(ctx: click.Context, status_: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    with client_from(ctx) as client:
        runs = client.list(status_.upper() if status_ else None, limit)
    if runs and not as_json:
        echo(f"{'RUN':<34} {'STATUS':<10} {'FLOW':<24} CREATED (UTC)")
    for r in runs:
        if as_json:
            echo_json(summary_dict(r), sort_keys=False)
        else:
            echo(f"{r.run_id:<34} {r.status:<10} {r.flow:<24} {timestamp(r.created_ms)}")


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def history(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Every transition applied to a run, in order, with refused (fenced) events."""
    with client_from(ctx) as client:
        entries = client.history(run_id)
    for e in entries:
        if as_json:
            echo_json(history_dict(e), sort_keys=False)
        else:
            print_history_entry(e)


def _control_command(action: str, doc: str) -> click.Command:
    @click.command(name=action, help=doc)
    @click.argument("run_id")
    @click.option("--reason", default="", help="Recorded in the run's history.")
    @click.option(
        "--no-wait", is_flag=True, help="Return once the request is enqueued, not once an engine applied it."
    )
    @click.pass_context
    @handle_errors
    def command(ctx: click.Context, run_id: str, reason: str, no_wait: bool) -> None:
        with client_from(ctx) as client:
            status = getattr(client, action)(run_id, reason, wait_s=None if no_wait else 30.0)
        echo(f"run {run_id}: {action} requested" if no_wait else f"run {run_id}: {status}")

    return command


CONTROL = {
    "cancel": "Cancel RUN_ID: tasks not yet running are skipped; nothing new starts.",
    "pause": "Pause RUN_ID: running tasks finish; nothing new starts until resume.",
    "resume": "Resume a paused RUN_ID: tasks that became ready meanwhile start.",
    "retry": "Retry a FAILED RUN_ID from its failed tasks, keeping completed results.",
}

COMMANDS = (
    run,
    submit,
    wait,
    status,
    list_,
    history,
    *(_control_command(a, doc) for a, doc in CONTROL.items()),
)
