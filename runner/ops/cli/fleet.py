"""``ackflow workers|queues``: the workers heard from recently, and the queues with their counts
(runner.ops.fleet)."""

from __future__ import annotations

import click

from runner import connect, protocol
from runner.broker import QueueInfo
from runner.client.render import timestamp
from runner.ops import fleet
from runner.ops.cli.common import config_from, echo, echo_json, handle_errors
from runner.presence import LIVE, LOST


def _age(now_ms: int, then_ms: int) -> str:
    s = max(0, now_ms - then_ms) / 1000
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object per line).")
@click.pass_context
@handle_errors
def workers(ctx: click.Context, as_json: bool) -> None:
    """List live workers and those lost or stopped recently (ACKFLOW_WORKER_KEEP_S).

    A worker is lost once it was silent for three heartbeats (ACKFLOW_WORKER_BEAT_S each): it
    died, froze or cannot reach Redis."""
    cfg = config_from(ctx)
    store = connect.open_store(cfg)
    try:
        now = protocol.now_ms()
        found = fleet.workers(store, cfg, now)
    finally:
        store.close()
    if as_json:
        for w in found:
            echo_json(w.as_json(now), sort_keys=False)
        return
    if found:
        echo(f"{'STATE':<8} {'WORKER':<28} {'QUEUES':<20} {'CONC':>4} {'RUNNING':>7}  {'HEARD':<9} VERSION")
    for w in found:
        echo(
            f"{w.state(now):<8} {w.id:<28} {','.join(w.queues):<20} {w.concurrency:>4} "
            f"{len(w.running):>7}  {_age(now, w.heard_ms):<9} {w.version}"
        )
        echo(f"         host {w.host} pid {w.pid}, started {timestamp(w.started_ms, precise=False)}")
        for r in w.running:
            echo(
                f"         running {r.task} (attempt {r.attempt}) of run {r.run_id}, {_age(now, r.since_ms)}"
            )
    states = [w.state(now) for w in found]
    echo(
        f"{states.count(LIVE)} live, {states.count(LOST)} lost, {len(found) - states.count(LIVE) - states.count(LOST)} stopped",
        err=True,
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object per line).")
@click.pass_context
@handle_errors
def queues(ctx: click.Context, as_json: bool) -> None:
    """List ackflow's queues with ready and unacknowledged messages and consumers.

    Task queues are those that runs used within the retention time or that workers consume.
    Unacknowledged counts what live workers hold (RabbitMQ does not tell clients)."""
    cfg = config_from(ctx)
    store = connect.open_store(cfg)
    broker = connect.open_broker(cfg, role="queues", attempts=3)
    try:
        if not isinstance(broker, QueueInfo):  # pragma: no cover - RabbitMQ's adapter has queues
            raise click.UsageError("this broker has no queues to show")
        rows = fleet.queue_rows(store, broker, cfg)
    finally:
        broker.close()
        store.close()
    if as_json:
        for r in rows:
            echo_json(r.as_json(), sort_keys=False)
        return
    echo(f"{'QUEUE':<24} {'READY':>7} {'UNACKED':>7} {'CONSUMERS':>9}  NOTE")
    for r in rows:
        unacked = "-" if r.unacked is None else str(r.unacked)
        note = (
            "missing on the broker" if not r.exists else "NO CONSUMER: messages wait" if r.unconsumed else ""
        )
        echo(f"{r.queue:<24} {r.ready:>7} {unacked:>7} {r.consumers:>9}  {note}".rstrip())
    for r in rows:
        if r.unconsumed:
            echo(f"warning: {r.ready} message(s) wait in {r.name}, which nobody consumes", err=True)


COMMANDS = (workers, queues)
