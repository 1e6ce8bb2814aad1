"""``ackflow engine|serve|topology|bench``: the long-running services and the broker's topology."""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from runner import connect, logs
from runner.broker import DEAD_QUEUE, ENGINE_QUEUE, QueueInfo, task_queue
from runner.client import Client
from runner.config import Config
from runner.ops.cli.banner import log_banner
from runner.ops.cli.common import EXIT_FAILED, config_from, echo, handle_errors, on_sigterm


@click.command()
@click.option(
    "--prefetch",
    type=int,
    envvar="ACKFLOW_ENGINE_PREFETCH",
    help="Unacknowledged events held at once [env ACKFLOW_ENGINE_PREFETCH; default 32].",
)
@click.option("--burst", is_flag=True, help="Exit once the engine queue is empty.")
@click.option(
    "--metrics-port",
    type=int,
    help="Serve Prometheus metrics (/metrics) and health probes (/healthz, /readyz) on this port.",
)
@click.pass_context
@handle_errors
def engine(ctx: click.Context, prefetch: int | None, burst: bool, metrics_port: int | None) -> None:
    """Run a stateless engine: consume flow events, advance runs (any number may run)."""
    from runner import health, metrics
    from runner.engine import Engine
    from runner.engine.durability import StoreGuard

    cfg = Config.from_env(**ctx.obj, engine_prefetch=prefetch)
    probes = health.serve(metrics_port) if metrics_port else health.Probes()
    store = connect.open_store(cfg)
    probes.starting("waiting for redis")
    connect.wait_for_store(store, cfg.startup_wait_s)
    guard = StoreGuard(cfg, store)
    guard.startup()  # logs a WARNING if Redis may lose runs; StoreNotDurable if required
    probes.starting("waiting for the broker")
    broker = connect.open_broker(cfg, role="engine", attempts=5, wait_s=cfg.startup_wait_s)
    eng = Engine(cfg, store, broker, guard=guard)
    on_sigterm(eng.stop)
    if metrics_port:
        from runner.ops.fleet import FleetCollector

        side = connect.open_store(connect.probe_config(cfg))  # scrapes and probes: short timeouts
        metrics.show_role("engine")
        metrics.count_runs(side)
        metrics.collect([FleetCollector(cfg, side, lambda: connect.open_broker(cfg, role="metrics"))])
        probes.add("redis", health.store_check(side))
        probes.add(
            "broker", health.flag_check(lambda: broker.consuming, "not consuming (broker unreachable)")
        )
    log = logging.getLogger("ackflow.engine")
    log.info("engine started (prefix %s)", cfg.prefix)
    log_banner(log, cfg, broker)
    try:
        eng.run(burst=burst)
    finally:
        broker.close()
        store.close()
    log.info("engine stopped after %d events", eng.processed)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="A host name browsers may reach the dashboard by (repeatable; also ACKFLOW_ALLOWED_HOSTS, "
    "comma-separated); 127.0.0.1, localhost, [::1] and --host always are.",
)
@click.option(
    "--metrics-port", type=int, help="Expose Prometheus metrics on this port (/metrics): Redis's durability."
)
@click.pass_context
@handle_errors
def serve(
    ctx: click.Context, host: str, port: int, allow_hosts: tuple[str, ...], metrics_port: int | None
) -> None:
    """Serve the dashboard and the lazy-task completion endpoint (see README).

    Dashboard at /runs (read-only unless ACKFLOW_OPERATOR_TOKEN is set); POST /v1/complete
    and /v1/fail with "Authorization: Bearer <token>" (needs ACKFLOW_SECRET); GET /healthz;
    the REST API under /v1 (OpenAPI at /v1/openapi.json; ACKFLOW_API_TOKEN, ACKFLOW_API_TOKENS_FILE)."""
    from runner.engine.durability import StoreGuard, keep_checking
    from runner.ops.http import tokens
    from runner.ops.http.app import make_server

    cfg = config_from(ctx)
    api_tokens = tokens.load(cfg.api_token, cfg.api_tokens_file)  # a bad one stops us first
    store = connect.open_store(cfg)
    guard = StoreGuard(cfg, store)
    try:  # logs a WARNING if Redis may lose runs; StoreNotDurable if required
        guard.startup()
    except BaseException:
        store.close()
        raise
    if metrics_port:
        from runner import metrics
        from runner.ops.fleet import FleetCollector

        queues = FleetCollector(cfg, store, lambda: connect.open_broker(cfg, role="metrics"))
        metrics.serve(metrics_port, collectors=[queues])
    env_hosts = [h for h in os.environ.get("ACKFLOW_ALLOWED_HOSTS", "").split(",") if h.strip()]
    server = make_server(
        host,
        port,
        lambda: Client.from_config(cfg),
        cfg.max_payload_bytes,
        operator_token=cfg.operator_token,
        completions=bool(cfg.secret),
        allowed_hosts=[*allow_hosts, *env_hosts],
        api_tokens=api_tokens,
    )
    on_sigterm(lambda: threading.Thread(target=server.shutdown, daemon=True).start())
    log = logging.getLogger("ackflow.http")
    log.info(
        "dashboard on %s/runs (%s)", server.url, "operators can log in" if cfg.operator_token else "read-only"
    )
    if not cfg.secret:
        log.warning("ACKFLOW_SECRET is not set: the lazy-task completion endpoint answers 503")
    if not (cfg.api_token or cfg.api_tokens_file):
        log.info("no API token (ACKFLOW_API_TOKEN, ACKFLOW_API_TOKENS_FILE): the REST API is read-only")
    stop, refused = threading.Event(), []

    def check_store() -> None:  # a data loss is logged; a Redis no longer durable stops a required serve
        e = keep_checking(guard, stop, cfg.store_check_s)
        if e is not None:
            refused.append(e)
            server.shutdown()

    threading.Thread(target=check_store, name="ackflow-store-check", daemon=True).start()
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.server_close()
        server.close_clients()
        store.close()
    if refused:
        raise refused[0]


@click.command()
@click.option("--queue", "-Q", "queues", multiple=True, help="Also declare this task queue. Repeatable.")
@click.option("--check", is_flag=True, help="Only check that the queues exist; declare nothing.")
@click.pass_context
@handle_errors
def topology(ctx: click.Context, queues: tuple[str, ...], check: bool) -> None:
    """Declare (or --check) the exchange and queues on RabbitMQ and print them with depths."""
    cfg = config_from(ctx)
    broker = connect.open_broker(cfg)
    logical = [ENGINE_QUEUE, DEAD_QUEUE, *(task_queue(q) for q in queues or ("default",))]
    try:
        if not check:
            broker.connect(attempts=3)
            broker.declare(logical)
        if not isinstance(broker, QueueInfo):  # pragma: no cover - RabbitMQ's adapter has queues
            raise click.UsageError("this broker has no queues to show")
        missing = 0
        for q in logical:
            try:
                depth = broker.depth(q)
                echo(f"{broker.physical(q):<40} ready={depth:<8} {broker.queue_arguments(q)}")
            except Exception as e:  # noqa: BLE001 - a passive declare of a missing queue
                missing += 1
                echo(f"{broker.physical(q):<40} MISSING ({logs.scrub(str(e))})")
                broker.close()
        if missing:
            sys.exit(EXIT_FAILED)
    finally:
        broker.close()


@click.command()
@click.option("--rounds", type=click.IntRange(min=1), help="Interleaved rounds (default 5; 1 with --quick).")
@click.option("--quick", is_flag=True, help="Small workloads, one round, no physical limits: about a minute.")
@click.option("--peers", default="celery,taskflow", show_default=True, help="Peers to compare with, or none.")
@click.option("--scale", is_flag=True, help="Also measure 4 engines + 4 workers.")
@click.option("--json", "json_path", metavar="FILE", help="Also write every figure as JSON to FILE.")
@click.pass_context
@handle_errors
def bench(
    ctx: click.Context, rounds: int | None, quick: bool, peers: str, scale: bool, json_path: str | None
) -> None:
    """Benchmark against the configured RabbitMQ + Redis, side by side with Celery and TaskFlow
    (when installed: pip install -e '.[bench]'), and print the tables."""
    import dataclasses

    from runner.ops import bench as b
    from runner.ops.bench.plan import parse_peers

    try:
        wanted = parse_peers(peers)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--peers") from e
    sizes = b.QUICK if quick else b.DEFAULT
    if rounds:
        sizes = dataclasses.replace(sizes, rounds=rounds)
    b.main(config_from(ctx), sizes, wanted, scale, json_path)


COMMANDS = (engine, serve, topology, bench)
