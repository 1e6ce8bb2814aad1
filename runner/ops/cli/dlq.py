"""``ackflow dlq list|show|replay|purge``: the dead-letter queue, through the `DeadLetters` protocol."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from runner import connect
from runner.broker import DeadLetters
from runner.ops.cli.common import config_from, echo, handle_errors


@contextmanager
def dead_letters(ctx: click.Context) -> Iterator[DeadLetters]:
    """The configured broker's dead queue, on a connection of its own (not consuming)."""
    broker = connect.open_broker(config_from(ctx), role="dlq", attempts=3)
    try:
        if not isinstance(broker, DeadLetters):  # pragma: no cover - RabbitMQ's adapter keeps them
            raise click.UsageError("this broker keeps no dead letters")
        yield broker
    finally:
        broker.close()


@click.group()
def dlq() -> None:
    """Dead letters: list, show, replay, purge."""


@dlq.command(name="list")
@click.option("--limit", default=100, show_default=True, help="At most this many, oldest first.")
@click.pass_context
@handle_errors
def dlq_list(ctx: click.Context, limit: int) -> None:
    """List dead letters with their reason, original queue and delivery count."""
    with dead_letters(ctx) as dead:
        letters = dead.list_dead(limit)
    for dl in letters:
        echo(f"{dl.id:<48} {dl.queue:<16} deliveries={dl.delivery_count:<3} {dl.reason}")
    echo(f"{len(letters)} dead letter(s)", err=True)


@dlq.command(name="show")
@click.argument("message_id")
@click.pass_context
@handle_errors
def dlq_show(ctx: click.Context, message_id: str) -> None:
    """Show one dead letter in full."""
    with dead_letters(ctx) as dead:
        dl = dead.show_dead(message_id)
    echo(f"id:         {dl.id}\nqueue:      {dl.queue}\ndeliveries: {dl.delivery_count}")
    echo(f"reason:     {dl.reason}\nbody:       {dl.describe_body()}")


@dlq.command(name="replay")
@click.argument("message_id")
@click.pass_context
@handle_errors
def dlq_replay(ctx: click.Context, message_id: str) -> None:
    """Send a dead letter back to the queue it came from."""
    with dead_letters(ctx) as dead:
        dl = dead.replay_dead(message_id)
    echo(f"replayed {dl.id} to {dl.queue}")


@dlq.command(name="purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handle_errors
def dlq_purge(ctx: click.Context, yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        click.confirm("Delete every dead letter?", abort=True)
    with dead_letters(ctx) as dead:
        echo(f"purged {dead.purge_dead()} dead letter(s)")
