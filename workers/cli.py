"""``ackflow worker``: the worker process, registered as a plugin command of the ``ackflow`` CLI."""

from __future__ import annotations

import logging
from typing import Any

import click

from runner.config import Config
from runner.define.loading import import_module
from runner.define.tasks import REGISTRY, check_name
from runner.errors import AckflowError, FlowDefinitionError
from runner.ops.cli.banner import log_banner
from runner.ops.cli.common import handle_errors, on_sigterm
from workers.aio import DEFAULT_ASYNC_CONCURRENCY


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
@click.option(
    "--async-concurrency",
    default=DEFAULT_ASYNC_CONCURRENCY,
    show_default=True,
    type=click.IntRange(1, 65536),
    help="async def tasks run at once, on one event loop thread (apart from the threads of "
    "--concurrency). A worker with async tasks holds this many more deliveries.",
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
    async_concurrency: int,
    name: str | None,
    burst: bool,
    metrics_port: int | None,
) -> None:
    """Execute tasks registered in MODULE... (imported first) from the task queues."""
    from runner import connect, health
    from workers.loop import Worker

    loaded = [import_module(m) for m in modules]
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
        async_concurrency=async_concurrency,
    )
    register_flows(store, loaded, f"worker {w.name}")
    on_sigterm(w.stop)
    if metrics_port:
        from runner import metrics
        from workers.presence import running_by_queue

        metrics.show_role("worker")
        metrics.collect([metrics.TasksRunning(lambda: running_by_queue(w.queues, w.snapshot()), w.prefetch)])
        probes.add("redis", health.store_check(connect.open_store(connect.probe_config(cfg))))
        probes.add(
            "broker", health.flag_check(lambda: broker.consuming, "not consuming (broker unreachable)")
        )
    log = logging.getLogger("ackflow.worker")
    log.info(
        "worker %s started: queues %s, concurrency %d%s, tasks %s",
        w.name,
        ", ".join(w.queues),
        concurrency,
        f" (+{async_concurrency} async)" if REGISTRY.has_async() else "",
        ", ".join(REGISTRY.names()),
    )
    log_banner(log, cfg, broker)
    w.run(burst=burst)
    log.info("worker %s stopped after %d tasks", w.name, w.executed)


def register_flows(store: Any, modules: list[Any], by: str) -> None:
    """Record the flows the worker's modules define in the flow registry, so producers can
    submit them by name, and its tasks in the task catalogue, so ``ackflow serve`` compiles
    inline definitions over them; a flow that does not compile here (its tasks elsewhere) or
    a store that does not answer is logged, never fatal: the worker's job is its tasks."""
    from runner.client import catalogue
    from runner.client import flows as registry
    from runner.define.loading import flows_in

    log = logging.getLogger("ackflow.worker")
    try:
        names = catalogue.record(store, REGISTRY, by=by)
    except AckflowError as e:
        log.warning("tasks not recorded in the catalogue: %s", e)
    else:
        log.info("tasks catalogued: %s", ", ".join(names) or "none")
    for module in modules:
        for f in flows_in(module):
            try:
                info = registry.register(store, f.compile(REGISTRY), by=by)
            except AckflowError as e:
                log.warning("flow %s of %s not registered: %s", f.name, module.__name__, e)
                continue
            log.info("flow %s registered (version %s)", info.name, info.digest[:12])
