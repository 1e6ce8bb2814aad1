"""Health probes and logs of real engine, worker and serve processes (issue 19, items 3 and 5).

Readiness follows Redis: each test runs its processes against a Redis of its own (OwnRedis, on
a free port), kills it, and restarts it. A process waiting for Redis at start is alive (its
port answers /healthz) and not ready. Requests are real HTTP requests to the processes."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runner.client import Client
from runner.config import Config
from tests.chaos.services import OwnRedis
from tests.helpers import flows
from tests.helpers.net import Forwarder, free_port
from tests.helpers.processes import Processes, http_json

pytestmark = pytest.mark.services


@pytest.fixture
def own_redis(tmp_path: Path) -> OwnRedis:
    own = OwnRedis(tmp_path)  # appendonly, appendfsync always: durable, so no warnings
    yield own  # type: ignore[misc]
    own.stop()


def test_engine_and_worker_are_ready_only_while_redis_answers(procs: Processes, own_redis: OwnRedis) -> None:
    own_redis.start()
    env = {"ACKFLOW_REDIS_URL": own_redis.url}
    ports = {"engine": free_port(), "worker": free_port()}
    started = {
        "engine": procs.engine("--metrics-port", str(ports["engine"]), env=env),
        "worker": procs.worker("--metrics-port", str(ports["worker"]), env=env),
    }
    for role, proc in started.items():
        body = procs.until_answers(proc, f"http://127.0.0.1:{ports[role]}/readyz", 200)
        assert body == {"ready": True, "checks": {"redis": "ok", "broker": "ok"}}, role

    own_redis.kill()  # refused from now on: the next probe cannot reach it
    for role, port in ports.items():
        code, body = http_json(f"http://127.0.0.1:{port}/readyz")
        assert code == 503 and body["ready"] is False, (role, body)
        assert body["checks"]["broker"] == "ok"
        assert body["checks"]["redis"].startswith(f"cannot reach redis at {own_redis.url}"), body
        assert http_json(f"http://127.0.0.1:{port}/healthz") == (200, {"ok": True})  # alive all along

    own_redis.start()
    for role, proc in started.items():
        procs.until_answers(proc, f"http://127.0.0.1:{ports[role]}/readyz", 200)
    procs.assert_alive()


def test_engine_and_worker_are_not_ready_while_the_broker_is_unreachable(
    procs: Processes, config: Config
) -> None:
    """The broker is reached through a relay that is closed (every connection dropped, new
    ones refused) and opened again."""
    url = urlsplit(config.broker_urls[0])
    assert url.hostname and url.port
    relay = Forwarder((url.hostname, url.port))
    relay.start()
    try:
        env = {
            "ACKFLOW_BROKER_URL": url._replace(
                netloc=f"{url.netloc.rsplit('@', 1)[0]}@127.0.0.1:{relay.port}"
            ).geturl()
        }
        ports = {"engine": free_port(), "worker": free_port()}
        started = {
            "engine": procs.engine("--metrics-port", str(ports["engine"]), env=env),
            "worker": procs.worker("--metrics-port", str(ports["worker"]), env=env),
        }
        ready = {role: f"http://127.0.0.1:{ports[role]}/readyz" for role in ports}
        for role, proc in started.items():
            procs.until_answers(proc, ready[role], 200)

        relay.close()
        for role, proc in started.items():
            body = procs.until_answers(proc, ready[role], 503)  # once it has seen its connection drop
            assert body == {
                "ready": False,
                "checks": {"redis": "ok", "broker": "not consuming (broker unreachable)"},
            }, role
            assert http_json(f"http://127.0.0.1:{ports[role]}/healthz") == (200, {"ok": True})

        relay.start()
        for role, proc in started.items():
            procs.until_answers(proc, ready[role], 200)  # reconnected, consuming again
    finally:
        relay.close()


@pytest.mark.parametrize("role", ["engine", "worker"])
def test_a_process_waiting_for_redis_at_start_is_alive_not_ready_then_ready(
    role: str, procs: Processes, own_redis: OwnRedis
) -> None:
    port = free_port()
    env = {"ACKFLOW_REDIS_URL": own_redis.url, "ACKFLOW_STARTUP_WAIT_S": "120"}  # not started yet
    proc = (procs.engine if role == "engine" else procs.worker)("--metrics-port", str(port), env=env)
    procs.until_logged(proc, "retrying (for up to")  # it met the refusal, logged it, and waits
    assert f"cannot reach redis at {own_redis.url}" in procs.logs()
    assert http_json(f"http://127.0.0.1:{port}/healthz") == (200, {"ok": True})
    code, body = http_json(f"http://127.0.0.1:{port}/readyz")
    assert (code, body) == (503, {"ready": False, "checks": {"process": "waiting for redis"}})

    own_redis.start()
    procs.until_logged(proc, "started")
    procs.until_answers(proc, f"http://127.0.0.1:{port}/readyz", 200)


def test_serve_is_not_ready_while_redis_is_down(procs: Processes, own_redis: OwnRedis) -> None:
    own_redis.start()
    base = procs.serve(env={"ACKFLOW_REDIS_URL": own_redis.url})
    serve = procs.procs[-1]
    assert http_json(f"{base}/readyz") == (200, {"ready": True, "checks": {"redis": "ok"}})

    own_redis.kill()
    code, body = http_json(f"{base}/readyz")
    assert code == 503 and body["ready"] is False, body
    assert body["checks"]["redis"].startswith("redis unavailable: ") and "refused" in body["checks"]["redis"]
    assert http_json(f"{base}/healthz") == (200, {"ok": True})

    own_redis.start()
    procs.until_answers(serve, f"{base}/readyz", 200)


def test_a_workers_logs_say_what_it_runs_and_the_engine_logs_a_runs_failure_with_its_traceback(
    procs: Processes, client: Client
) -> None:
    """The log options after the subcommand (item 10) give JSON lines that carry the run."""
    eng = procs.engine("--log-format", "json")
    wrk = procs.worker("-c", "2", "--log-format", "json")
    procs.until_logged(eng, "connected to broker")
    procs.until_logged(wrk, "connected to broker")
    ok = client.submit(flows.chain(2), {"v0": 1})
    bad = client.submit(flows.failing_flow, {"x": 1})
    assert procs.wait(client, ok).status == "SUCCESS"
    assert procs.wait(client, bad).status == "FAILED"
    procs.until_logged(eng, f"run {bad} failed")  # after the commit that ended it
    for p in (eng, wrk):
        p.terminate()
        p.wait(timeout=30)
    procs.stop_all()  # every line is in the log files
    text = {p.name: p.read_text() for p in procs.logdir.glob("*.log")}
    records = {name: [json.loads(ln) for ln in t.splitlines() if ln.strip()] for name, t in text.items()}
    worker = next(r for n, r in records.items() if n.startswith("worker"))
    engine = next(r for n, r in records.items() if n.startswith("engine"))

    banner = [r["msg"] for r in worker + engine if "connected to broker" in r["msg"] and "; " in r["msg"]]
    assert len(banner) == 2, banner
    for line in banner:
        assert line.startswith("ackflow 0.1.0 (Python 3.") and "kombu " in line and "redis-py " in line
        assert "guest:***@" in line and "(RabbitMQ " in line and ", redis redis" in line
    assert not any("guest:guest@" in t for t in text.values())

    mine = [r for r in worker if r["logger"] == "ackflow.worker.tasks" and r.get("run_id") == ok]
    assert [r["msg"].split(" (")[0] for r in mine if "received" in r["msg"]] == [
        "task s1 received",
        "task s2 received",
    ]
    assert sum(1 for r in mine if r["level"] == "INFO" and " succeeded in " in r["msg"]) == 2
    failed = [r for r in worker if r.get("run_id") == bad and r["level"] == "WARNING"]
    assert [(r["task"], r["attempt"]) for r in failed] == [("explode", 1)]
    assert failed[0]["msg"].startswith("task explode failed in ") and failed[0]["msg"].endswith(
        ": ValueError: boom 2"
    )
    ended = [r for r in engine if r["logger"] == "ackflow.engine.runs" and r.get("run_id") == bad]
    assert [r["level"] for r in ended] == ["ERROR"]
    assert ended[0]["msg"].startswith(f"run {bad} failed: task 'explode' attempt 1: ValueError: boom 2\n")
    assert (
        "Traceback (most recent call last):" in ended[0]["msg"]
        and 'raise ValueError(f"boom {x}")' in ended[0]["msg"]
    )
    assert any(r["msg"] == f"run {ok} succeeded" for r in engine if r["logger"] == "ackflow.engine.runs")
    for records_of, what in ((worker, "worker"), (engine, "engine")):  # a graceful stop says so
        said = [r["msg"] for r in records_of]
        assert "SIGTERM: stopping gracefully (finishing what runs)" in said, what
        assert said[-1].startswith(f"{what} ") and " stopped after " in said[-1], said[-1]
