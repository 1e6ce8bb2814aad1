"""``ackflow config``: the settings a command here would use, and where each came from."""

from __future__ import annotations

import json

import click

from runner.config import Config
from runner.ops.cli.common import echo, handle_errors


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def config(ctx: click.Context, as_json: bool) -> None:
    """Show every setting (passwords and secrets redacted) and its source: default, the
    config file (--config / ACKFLOW_CONFIG), an ACKFLOW_* variable, or an option."""
    cfg, sources = Config.load(**(ctx.obj or {}))
    shown = cfg.shown()
    if as_json:
        echo(json.dumps({k: {"value": v, "source": sources[k]} for k, v in shown.items()}, indent=2))
        return
    width = max(len(k) for k in shown)
    for k, v in shown.items():
        echo(f"{k:<{width}}  {v!s:<40}  {sources[k]}")


COMMANDS = (config,)
