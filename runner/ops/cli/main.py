"""The ``ackflow`` group: its options, its commands, and the plugins other packages add."""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from runner import logs
from runner.ops.cli import completions, fleet, flows_cmd, runs, schedule_cmd, services, settings
from runner.ops.cli.common import LOG_FORMATS, LOG_LEVELS, Main
from runner.ops.cli.dlq import dlq


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_file",
    envvar="ACKFLOW_CONFIG",
    metavar="FILE",
    help="A TOML file of settings, keys as the ACKFLOW_* variables; the environment wins "
    "[env ACKFLOW_CONFIG].",
)
@click.option("--broker-url", help="RabbitMQ URL [env ACKFLOW_BROKER_URL].")
@click.option("--redis-url", help="Redis URL [env ACKFLOW_REDIS_URL].")
@click.option(
    "--prefix",
    help="Deployment prefix for exchange, queues and keys [env ACKFLOW_PREFIX; default ackflow].",
)
@click.option(
    "--log-level",
    envvar="ACKFLOW_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(LOG_LEVELS),
    help="Log verbosity.",
)
@click.option(
    "--log-format",
    envvar="ACKFLOW_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(LOG_FORMATS),
    help="text for people, json (one object per line, with run_id/task/attempt) for machines.",
)
@click.version_option(package_name="ackflow")
@click.pass_context
def main(
    ctx: click.Context,
    config_file: str | None,
    broker_url: str | None,
    redis_url: str | None,
    prefix: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """ackflow: durable workflows on RabbitMQ + Redis, or embedded in one process.

    Every option also reads an ACKFLOW_* environment variable; --log-level and --log-format
    may also follow the subcommand. Exit codes: 0 ok, 1 run failed, 2 bad input, 3 service
    unavailable, 4 timed out, 5 no such run or schedule, 6 already completed, 7 run lost. Shell
    completion: eval "$(_ACKFLOW_COMPLETE=bash_source ackflow)" (zsh_source, fish_source).
    """
    ctx.obj = {"config_file": config_file, "broker_url": broker_url, "redis_url": redis_url, "prefix": prefix}
    logs.setup(log_level, log_format)


for _command in (
    *runs.COMMANDS,
    *completions.COMMANDS,
    *services.COMMANDS,
    *settings.COMMANDS,
    *flows_cmd.COMMANDS,
    *schedule_cmd.COMMANDS,
    *fleet.COMMANDS,
    dlq,
):
    main.add_command(_command)
main.add_command(services.serve, name="dashboard")


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
