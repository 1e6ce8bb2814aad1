"""Redis durability end to end (finding M4): the start-up check against a real Redis, and runs
whose state vanished while active reported as lost — by the engine, the CLI and metrics."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from runner import states
from runner.client import Client
from runner.config import Config, is_cluster_url
from runner.connect import open_store
from runner.errors import RunNotFound
from tests.chaos.services import OwnRedis
from tests.helpers.net import free_port
from tests.helpers.processes import ACKFLOW, ROOT, Processes, cli_env, until_run

EXIT_UNAVAILABLE, EXIT_NOT_FOUND, EXIT_LOST = 3, 5, 7
REQUIRE = {"ACKFLOW_REQUIRE_DURABLE_STORE": "true"}
# Long tasks take a lease at once and beat every 1 s, so a worker's heartbeat meets the loss.
FAST_LEASES = {"ACKFLOW_ACK_AFTER_S": "0", "ACKFLOW_LEASE_S": "3"}


def scrape(port: int, proc: subprocess.Popen[bytes], procs: Processes) -> str:
    """/metrics once it answers (failing at once if the process died); an engine serves it
    from the start: wait for its /readyz first to see what it found at start."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            assert proc.poll() is None, f"engine exited with {proc.returncode}\n{procs.logs()}"
            assert time.monotonic() < deadline, procs.logs()
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass


def task_running(client: Client, run_id: str, task: str) -> bool:
    try:
        return bool(client.status(run_id).tasks[task].status == states.RUNNING)
    except (RunNotFound, KeyError):  # its submit is not applied yet (only its id reserved: no tasks)
        return False


def machine_redis_is_durable(url: str) -> bool:
    if is_cluster_url(url):
        return False  # the test wants one server it can reconfigure
    c = redis.Redis.from_url(url)
    try:
        got = {k: c.config_get(k)[k] for k in ("appendonly", "appendfsync", "maxmemory-policy")}
    finally:
        c.close()
    return got == {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}


def test_engine_and_serve_warn_about_a_volatile_redis_and_refuse_when_durability_is_required(
    procs: Processes, config: Config
) -> None:
    if machine_redis_is_durable(config.redis_url):
        pytest.skip("this machine's Redis is durable: nothing to warn about")
    started = procs.run("engine", "--burst", timeout_s=120)
    assert started.returncode == 0, started.stderr
    assert "WARNING" in started.stderr and "Redis is NOT durable" in started.stderr
    assert "appendonly is no" in started.stderr and "CONFIG SET appendonly yes" in started.stderr

    refused = procs.run("engine", "--burst", env=REQUIRE, timeout_s=120)
    assert refused.returncode == EXIT_UNAVAILABLE, refused.stderr
    assert "refusing to run because ACKFLOW_REQUIRE_DURABLE_STORE is set" in refused.stderr

    served = procs.run("serve", "--port", str(free_port()), env=REQUIRE, timeout_s=120)
    assert served.returncode == EXIT_UNAVAILABLE, served.stderr
    assert "Redis is NOT durable" in served.stderr


def test_a_durable_redis_gives_no_warning_and_the_gauge_says_durable(
    procs: Processes, tmp_path: Path
) -> None:
    own = OwnRedis(tmp_path)  # appendonly yes, appendfsync always, noeviction
    own.start()
    try:
        env = {"ACKFLOW_REDIS_URL": own.url, **REQUIRE}
        port = free_port()
        eng = procs.engine("--metrics-port", str(port), env=env)
        procs.until_answers(eng, f"http://127.0.0.1:{port}/readyz", 200)  # its port answers from the start
        text = scrape(port, eng, procs)
        assert "ackflow_store_durable 1.0" in text
        assert (
            'ackflow_store_settings_info{appendfsync="always",appendonly="yes",maxmemory_policy="noeviction"} 1.0'
            in text
        )
        log = procs.logs()
        assert "Redis is durable" in log
        assert "NOT durable" not in log and "WARNING" not in log
    finally:
        own.stop()


def test_runs_whose_state_vanished_while_active_are_reported_lost(
    procs: Processes, config: Config, client: Client
) -> None:
    port = free_port()
    eng = procs.engine("--metrics-port", str(port), env=FAST_LEASES)
    procs.worker("-c", "4", env=FAST_LEASES)
    procs.until_answers(eng, f"http://127.0.0.1:{port}/readyz", 200)  # the engine is up
    waiter = subprocess.Popen(
        [
            *ACKFLOW,
            "submit",
            "tests.helpers.flows:slow_flow",
            "-i",
            "seconds=6",
            "--run-id",
            "lost-wait",
            "--wait",
        ],
        cwd=ROOT,
        env=cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        others = [client.submit(_slow_flow(), {"seconds": 6}, run_id=f"lost-{i}") for i in range(2)]
        runs = ["lost-wait", *others]

        for r in runs:
            until_run(client, r, lambda r=r: task_running(client, r, "slow"), f"{r}: slow RUNNING", procs, 90)
        # What a FLUSHDB does to this deployment, and only to this test's prefix (the Redis
        # is shared): every key of it is gone, the epoch too.
        store = open_store(config)
        assert store.delete_prefix() > 0
        store.close()

        out, err = waiter.communicate(timeout=120)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == EXIT_LOST, (out, err)
    assert "run 'lost-wait' was lost: its state vanished from Redis" in err
    assert "no run with id" not in err

    for r in runs:
        procs.until_logged(eng, f"run {r} lost: its state vanished", timeout_s=90)
    log = "".join(p.read_text() for p in procs.logdir.glob("engine-*.log"))
    assert "ERROR" in log and "Redis lost its data" in log
    assert not any(f"unknown run {r} (expired or never created)" in log for r in runs)
    text = scrape(port, eng, procs)
    assert "ackflow_runs_lost_total 3.0" in text

    for r in runs:
        st = procs.run("status", r)
        assert st.returncode == EXIT_LOST, st.stderr
        assert f"run {r!r} was lost" in st.stderr
    typo = procs.run("status", "no-such-run")
    assert typo.returncode == EXIT_NOT_FOUND and "no run with id 'no-such-run'" in typo.stderr

    worker_log = "".join(p.read_text() for p in procs.logdir.glob("worker-*.log"))
    assert "lost: its state vanished from Redis while task slow ran; told the task to stop" in worker_log
    assert "was cancelled" not in worker_log


def _slow_flow():  # type: ignore[no-untyped-def]
    from tests.helpers import flows

    return flows.slow_flow


def test_serve_checks_redis_again_and_stops_when_a_reconnect_finds_it_not_durable(
    procs: Processes, tmp_path: Path
) -> None:
    """`ackflow serve` checks Redis at start and again on reconnect, as engines do, and says so
    on its own /metrics: a loss of its data is logged and counted, and under ACKFLOW_REQUIRE_DURABLE_STORE a Redis found no longer durable
    after a reconnect stops it (exit 3)."""
    own = OwnRedis(tmp_path)  # appendonly yes, appendfsync always, noeviction
    own.start()
    c = redis.Redis.from_url(own.url)
    port = free_port()
    try:
        env = {"ACKFLOW_REDIS_URL": own.url, "ACKFLOW_STORE_CHECK_S": "0.2", **REQUIRE}
        procs.serve("--metrics-port", str(port), env=env)
        serve = procs.procs[-1]
        procs.until_logged(serve, "Redis is durable")
        assert "ackflow_store_durable 1.0" in scrape(port, serve, procs)
        c.flushall()  # what a restart without persistence leaves
        procs.until_logged(serve, "Redis lost its data")
        assert "ackflow_store_data_losses_total 1.0" in scrape(port, serve, procs)
        c.config_set("appendonly", "no")
        c.client_kill_filter(_type="normal", skipme=True)  # serve's connections: it reconnects
        assert serve.wait(timeout=60) == EXIT_UNAVAILABLE, procs.logs()
        procs.retire(serve)
        log = procs.logs()
        assert "Redis is NOT durable" in log
        assert "refusing to run because ACKFLOW_REQUIRE_DURABLE_STORE is set" in log
    finally:
        c.close()
        own.stop()
