"""``ackflow flows``: register the flows of modules by name; list and show registered flows."""

from __future__ import annotations

import click

from runner.client import catalogue
from runner.client import flows as registry
from runner.client.render import timestamp
from runner.define.tasks import REGISTRY
from runner.ops.cli.common import client_from, echo, echo_json, handle_errors


@click.group()
def flows() -> None:
    """The flow registry: flows by name, so producers submit without importing their modules."""


@flows.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@click.pass_context
@handle_errors
def register(ctx: click.Context, modules: tuple[str, ...]) -> None:
    """Register the flows MODULE... define, and record their tasks in the task catalogue
    (workers do both for the modules they load)."""
    from runner.define.loading import flows_in, import_module

    found = [(m, f) for m in modules for f in flows_in(import_module(m))]
    if not found:
        raise click.BadParameter(
            f"no flow defined at the top level of {', '.join(modules)}", param_hint="MODULE"
        )
    with client_from(ctx) as client:
        catalogue.record(client.store, REGISTRY, by=f"ackflow flows register {' '.join(modules)}")
        for module, f in found:
            info = registry.register(client.store, f.compile(), by=f"ackflow flows register {module}")
            echo(f"{info.name:<24} {info.digest[:12]}  ({len(info.tasks)} tasks, from {module})")


@flows.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--module", "-m", "modules", multiple=True, help="Import first (its tasks). Repeatable.")
@click.option("--check", is_flag=True, help="Only check the files; register nothing.")
@click.pass_context
@handle_errors
def apply(ctx: click.Context, files: tuple[str, ...], modules: tuple[str, ...], check: bool) -> None:
    """Register the flows FILE... define in YAML or JSON over registered tasks (the format:
    README "Flows as data"), checked exactly like flows written in Python."""
    from runner.define import data
    from runner.define.loading import import_module

    for m in modules:
        import_module(m)
    specs = [(f, data.load(f).compile()) for f in files]  # every file checked before any is applied
    if check:
        for f, spec in specs:
            echo(f"{f}: flow {spec.name} ok ({len(spec.tasks)} tasks)")
        return
    with client_from(ctx) as client:
        catalogue.record(client.store, REGISTRY, by=f"ackflow flows apply {' '.join(files)}")
        for f, spec in specs:
            info = registry.register(client.store, spec, by=f"ackflow flows apply {f}")
            echo(f"{info.name:<24} {info.digest[:12]}  ({len(info.tasks)} tasks, from {f})")


@flows.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def list_(ctx: click.Context, as_json: bool) -> None:
    """Registered flows: latest version, versions kept, inputs, when and by whom registered."""
    with client_from(ctx) as client:
        infos = registry.list_flows(client.store)
    if as_json:
        for i in infos:
            echo_json(_dict(i), sort_keys=False)
        return
    if infos:
        echo(f"{'FLOW':<24} {'VERSION':<12}  {'VERSIONS':>8}  {'REGISTERED (UTC)':<19}  INPUTS")
    for i in infos:
        echo(
            f"{i.name:<24} {i.digest[:12]}  {i.versions:>8}  {timestamp(i.registered_ms, precise=False):<19}"
            f"  {', '.join(i.inputs) or '-'}"
        )


@flows.command()
@click.argument("name")
@click.option("--version", help="A version's digest (or its start); default: the latest.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def show(ctx: click.Context, name: str, version: str | None, as_json: bool) -> None:
    """A registered flow: its versions, inputs, and each task's queue and predecessors."""
    with client_from(ctx) as client:
        info = registry.info(client.store, name)
        spec = registry.get(client.store, name, version)
        digests = client.store.flow_digests(name)
    shown = registry.digest_of(spec)
    if as_json:
        echo_json(
            {**_dict(info), "shown": shown, "all_versions": digests, "spec": spec.to_data()}, sort_keys=False
        )
        return
    echo(f"flow {name}  version {shown}{'  (latest)' if shown == info.digest else ''}")
    echo(
        f"registered {timestamp(info.registered_ms)} by {info.by}; versions: {', '.join(d[:12] for d in digests)}"
    )
    echo(
        f"inputs: {', '.join(spec.inputs) or '-'}"
        + (f"  (optional: {', '.join(spec.optional_inputs)})" if spec.optional_inputs else "")
    )
    echo(f"outputs: {', '.join(spec.outputs) or '-'}")
    for t, ts in spec.tasks.items():
        after = f"after {', '.join(ts.preds)}" if ts.preds else "first"
        echo(f"  {t:<30} {ts.fn:<24} queue {ts.queue:<12} {after}")


def _dict(i: registry.FlowInfo) -> dict[str, object]:
    return {
        "name": i.name,
        "version": i.digest,
        "versions": i.versions,
        "registered_ms": i.registered_ms,
        "by": i.by,
        "inputs": i.inputs,
        "tasks": i.tasks,
        "queues": i.queues,
    }


COMMANDS = (flows,)
