"""``ackflow schedule add|list|show|pause|resume|delete``: flows started by the engines on a
cron expression or an interval (`runner.client.schedules`); one-shots are ``submit --at/--in``."""

from __future__ import annotations

import click

from runner.client import flows
from runner.client.render import timestamp
from runner.client.schedules import as_dict, describe_when, state_of
from runner.define.input_types import text_inputs
from runner.ops.cli.common import client_from, echo, echo_json, handle_errors, parse_inputs, with_inputs
from runner.schedule.timing import CATCHUPS, OVERLAPS


@click.group()
def schedule() -> None:
    """Schedules: registered flows started by the engines on a cron expression or an interval,
    exactly once per scheduled time (run id SCHEDULE:TIME)."""


@schedule.command()
@click.argument("name")
@click.argument("flow")
@with_inputs
@click.option("--cron", help='A cron expression: 5 fields, or 6 with seconds last ("*/5 * * * *").')
@click.option("--tz", default="UTC", show_default=True, help="The time zone --cron is read in (IANA name).")
@click.option("--every", help="Fire every DURATION instead (90s, 10m, 1h30m, 1d) from now.")
@click.option(
    "--version", help="Pin a registered version of FLOW (digest or its start); default: the latest."
)
@click.option(
    "--overlap",
    type=click.Choice(OVERLAPS),
    default="skip",
    show_default=True,
    help="When a firing comes while the previous run still runs: skip it, allow both, or cancel_previous.",
)
@click.option(
    "--catchup",
    type=click.Choice(CATCHUPS),
    default="latest",
    show_default=True,
    help="Firings missed while no engine ran: none, the latest one, or all (within the window).",
)
@click.option(
    "--catchup-window", metavar="DURATION", help="With latest or all: skip firings later than this."
)
@click.pass_context
@handle_errors
def add(
    ctx: click.Context,
    name: str,
    flow: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    cron: str | None,
    tz: str,
    every: str | None,
    version: str | None,
    overlap: str,
    catchup: str,
    catchup_window: str | None,
) -> None:
    """Add schedule NAME of registered flow FLOW (validated like a submit by name)."""
    with client_from(ctx) as client:
        spec = flows.get(client.store, flow, version)
        inputs = parse_inputs(pairs, inputs_json, text_inputs(spec.input_kinds))
        s = client.schedules.add(
            name,
            flow,
            inputs,
            cron=cron,
            tz=tz,
            every=every,
            version=version,
            overlap=overlap,
            catchup=catchup,
            catchup_window=catchup_window,
        )
    echo(f"schedule {s.name}: {describe_when(s)}; next firing {_when(s.next_ms)}")


def _when(ms: int | None) -> str:
    return "-" if ms is None else f"{timestamp(ms, precise=False)} UTC"


@schedule.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def list_(ctx: click.Context, as_json: bool) -> None:
    """Every schedule: its flow, when it fires, its next firing, state and last run."""
    with client_from(ctx) as client:
        found = client.schedules.list()
    if as_json:
        for s in found:
            echo_json(as_dict(s), sort_keys=False)
        return
    if found:
        echo(f"{'SCHEDULE':<20} {'FLOW':<18} {'WHEN':<26} {'NEXT (UTC)':<19}  {'STATE':<7} LAST RUN")
    for s in found:
        nxt = "-" if s.next_ms is None else timestamp(s.next_ms, precise=False)
        echo(
            f"{s.name:<20} {s.flow:<18} {describe_when(s):<26} {nxt:<19}  {state_of(s):<7} {s.last_run or '-'}"
        )


@schedule.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One schedule: its definition, policies and state."""
    with client_from(ctx) as client:
        s = client.schedules.get(name)
    if as_json:
        echo_json(as_dict(s), sort_keys=False)
        return
    echo(f"schedule {s.name}  ({state_of(s)})")
    echo(f"flow {s.flow}" + (f" version {s.version}" if s.version else " (latest version)"))
    echo(f"fires: {describe_when(s)}; next: {_when(s.next_ms)}")
    window = f", window {s.window_s}s" if s.window_s is not None else ""
    echo(f"overlap: {s.overlap}; catch-up: {s.catchup}{window}")
    echo(f"inputs: {s.inputs or '-'}")
    echo(f"fired: {s.fired}; last run: {s.last_run or '-'} (scheduled {_when(s.last_ms)})")
    if s.note:
        echo(f"note: {s.note}")


def _change(ctx: click.Context, name: str, action: str) -> None:
    with client_from(ctx) as client:
        if action == "delete":
            client.schedules.delete(name)
            echo(f"schedule {name} deleted")
            return
        s = client.schedules.pause(name) if action == "pause" else client.schedules.resume(name)
    echo(f"schedule {name} {state_of(s)}; next firing {_when(None if s.paused else s.next_ms)}")


@schedule.command()
@click.argument("name")
@click.pass_context
@handle_errors
def pause(ctx: click.Context, name: str) -> None:
    """Stop firing NAME (firings due meanwhile are skipped)."""
    _change(ctx, name, "pause")


@schedule.command()
@click.argument("name")
@click.pass_context
@handle_errors
def resume(ctx: click.Context, name: str) -> None:
    """Fire NAME again, from its next scheduled time after now."""
    _change(ctx, name, "resume")


@schedule.command()
@click.argument("name")
@click.pass_context
@handle_errors
def delete(ctx: click.Context, name: str) -> None:
    """Forget schedule NAME (its runs stay)."""
    _change(ctx, name, "delete")


COMMANDS = (schedule,)
