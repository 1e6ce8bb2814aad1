"""``ackflow worker``: the worker process, registered as a plugin command of the ``ackflow`` CLI."""

from __future__ import annotations

import logging

import click

from runner.config import Config
from runner.define.loading import import_module
from runner.define.tasks import REGISTRY, check_name
from runner.errors import FlowDefinitionError
from runner.ops.cli.banner import log_banner
from runner.ops.cli.common import handle_errors, on_sigterm


def queue_list(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``-Q a,b -Q c`` -> (a, b, c), as Celery reads it: blanks stripped, each name checked,
    each queue once."""
    out: list[str] = []
    for value in values:
        for raw in value.split(","):
            q = raw.strip()
            if not q:
                raise click.BadParameter(f"{value!r} has an empty queue name", ctx, param)
            try:
                check_name("queue", q)
            except FlowDefinitionError as e:
                raise click.BadParameter(str(e), ctx, param) from None
            if q not in out:
                out.append(q)
    return tuple(out)


@click.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@click.option(
    "--queue",
    "-Q",
    "queues",
    multiple=True,
    callback=queue_list,
    metavar="QUEUE[,QUEUE...]",
    help="Task queues to consume (default: default). Comma-separated, repeatable.",
)
@click.option(
    "--concurrency",
    "-c",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Tasks executed at once (threads).",
)
@click.option(
    "--max-long",
    type=click.IntRange(0, 65536),
    help="Long tasks (past ACKFLOW_ACK_AFTER_S, running under a lease) that may give their slot "
    "back to new requests [default: 4 x concurrency].",
)
@click.option("--name", help="Worker name shown in run histories (default: host:pid).")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty and nothing runs.")
@click.option(
    "--metrics-port",
    type=int,
    help="Serve Prometheus metrics (/metrics) and health probes (/healthz, /readyz) on this port.",
)
@click.pass_context
@handle_errors
def worker(
    ctx: click.Context,
    modules: tuple[str, ...],
    queues: tuple[str, ...],
    concurrency: int,
    max_long: int | None,
    name: str | None,
    burst: bool,
    metrics_port: int | None,
) -> None:
    """Execute tasks registered in MODULE... (imported first) from the task queues."""
    from runner import connect, health
    from workers.loop import Worker

    for m in modules:
        import_module(m)
    cfg = Config.from_env(**(ctx.obj or {}))
    probes = health.serve(metrics_port) if metrics_port else health.Probes()
    probes.starting("waiting for the broker")
    broker = connect.open_broker(cfg, role="worker", attempts=5, wait_s=cfg.startup_wait_s)
    store = connect.open_store(cfg)
    probes.starting("waiting for redis")
    try:
        connect.wait_for_store(store, cfg.startup_wait_s)
    except BaseException:
        broker.close()
        raise
    w = Worker(
        cfg,
        broker,
        REGISTRY,
        queues=list(queues) or None,
        concurrency=concurrency,
        name=name,
        store=store,
        max_long=max_long,
    )
    on_sigterm(w.stop)
    if metrics_port:
        probes.add("redis", health.store_check(connect.open_store(connect.probe_config(cfg))))
        probes.add(
            "broker", health.flag_check(lambda: broker.consuming, "not consuming (broker unreachable)")
        )
    log = logging.getLogger("ackflow.worker")
    log.info(
        "worker %s started: queues %s, concurrency %d, tasks %s",
        w.name,
        ", ".join(w.queues),
        concurrency,
        ", ".join(REGISTRY.names()),
    )
    log_banner(log, cfg, broker)
    w.run(burst=burst)
    log.info("worker %s stopped after %d tasks", w.name, w.executed)
