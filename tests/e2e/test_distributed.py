"""End to end on real RabbitMQ + Redis: engine and worker are separate processes started
through the CLI, exactly as an operator starts them."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest

from runner.broker.kombu import KombuBroker
from runner.client import Client, RunInfo
from runner.config import Config
from runner.local import LocalRuntime
from tests.helpers import flows
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services


@pytest.fixture
def cluster(procs: Processes) -> Processes:
    procs.engine()
    procs.worker("-c", "4")
    return procs


def summary(info: RunInfo) -> tuple[str, Any, dict[str, str]]:
    return info.status, info.result, {n: t.status for n, t in info.tasks.items()}


CASES = [
    ("chain10", flows.chain10, {"v0": 0}, {"v10": 10}),
    ("diamond", flows.diamond_flow, {"x": 1}, {"d": [5, 10, 15]}),
    ("fanout100", flows.fanout100, {"n": 2}, {"total": 200_000}),
    ("nested", flows.nested_flow, {"x": 5}, {"total": 13}),
]


@pytest.mark.parametrize("name,flow,inputs,result", CASES, ids=[c[0] for c in CASES])
def test_flow_runs_distributed_and_locally_with_identical_results(
    cluster: Processes, client: Client, name: str, flow: Any, inputs: dict[str, Any], result: Any
) -> None:
    rid = client.submit(flow, inputs)
    distributed = cluster.wait(client, rid)
    with LocalRuntime() as rt:
        local = rt.run(flow, inputs, timeout_s=120)
    assert distributed.status == "SUCCESS", cluster.logs()
    assert distributed.result == result
    assert summary(distributed) == summary(local)
    # every transition applied exactly once
    seen = [(h.scope, h.old, h.new, h.attempt) for h in client.history(rid) if h.old != h.new]
    assert len(seen) == len(set(seen))
    assert sum(1 for h in client.history(rid) if h.new == "SUCCESS" and h.scope != "run") == len(
        flow.compile().tasks
    )


def test_fifty_concurrent_runs(cluster: Processes, client: Client) -> None:
    ids = [client.submit(flows.chain10, {"v0": i}) for i in range(50)]
    infos = [cluster.wait(client, r, 300) for r in ids]
    assert [i.status for i in infos] == ["SUCCESS"] * 50
    assert [i.result for i in infos] == [{"v10": i + 10} for i in range(50)]
    assert set(client.store.list_runs("SUCCESS", 100)) >= set(ids)


def test_failing_task_through_the_cli(cluster: Processes) -> None:
    out = cluster.run(
        "submit",
        "tests.helpers.flows:failing_flow",
        "--input",
        "x=1",
        "--wait",
        "--run-id",
        "fail-1",
        "--timeout",
        "120",
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "task explode (attempt 1): RUNNING -> FAILED  [ValueError: boom 2]" in out.stdout
    assert "run fail-1: FAILED" in out.stdout
    status = cluster.run("status", "fail-1")
    assert status.returncode == 0
    assert "ValueError: boom 2" in status.stdout
    assert 'raise ValueError(f"boom {x}")' in status.stdout  # the traceback text
    assert "after" in status.stdout and "PENDING" in status.stdout
    history = cluster.run("history", "fail-1")
    assert "run: RUNNING -> FAILED" in history.stdout
    listed = cluster.run("list", "--status", "FAILED")
    assert "fail-1" in listed.stdout


def test_submit_wait_status_list_history_through_the_cli(cluster: Processes) -> None:
    out = cluster.run(
        "submit", "tests.helpers.flows:diamond_flow", "-i", "x=2", "--run-id", "cli-1", "--wait"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0] == "cli-1"
    assert 'result: {"d": [7, 20, 27]}' in out.stdout
    again = cluster.run("submit", "tests.helpers.flows:diamond_flow", "-i", "x=2", "--run-id", "cli-1")
    assert again.returncode == 0  # idempotent by run id
    clash = cluster.run("submit", "tests.helpers.flows:diamond_flow", "-i", "x=3", "--run-id", "cli-1")
    assert clash.returncode == 2 and "already exists" in clash.stderr
    status = cluster.run("status", "cli-1", "--json")
    assert '"status": "SUCCESS"' in status.stdout
    assert cluster.run("status", "no-such-run").returncode == 5
    history = cluster.run("history", "cli-1").stdout
    assert history.count("run: PENDING -> RUNNING") == 1 and history.count("run: RUNNING -> SUCCESS") == 1
    waited = cluster.run("wait", "cli-1")  # a finished run: its history, then its outcome
    assert waited.returncode == 0 and "run: RUNNING -> SUCCESS" in waited.stdout
    assert waited.stdout.splitlines()[-2:] == ["run cli-1: SUCCESS", 'result: {"d": [7, 20, 27]}']
    assert cluster.run("wait", "no-such-run").returncode == 5
    listed = cluster.run("list", "--status", "success").stdout.splitlines()  # any case
    assert listed[0].split() == ["RUN", "STATUS", "FLOW", "CREATED", "(UTC)"]
    assert any(line.startswith("cli-1 ") for line in listed[1:])


def test_bad_input_is_refused_before_enqueue(cluster: Processes) -> None:
    missing = cluster.run("submit", "tests.helpers.flows:chain10")
    assert missing.returncode == 2 and "requires 'v0'" in missing.stderr
    big = cluster.run(
        "submit",
        "tests.helpers.flows:echo_flow",
        "-i",
        "text=" + "x" * 5000,
        env={"ACKFLOW_MAX_PAYLOAD_BYTES": "4096"},
    )
    assert big.returncode == 2 and "over the limit of 4096 bytes" in big.stderr
    typo = cluster.run("submit", "tests.helpers.flows:chain10", "-i", "v=1")
    assert typo.returncode == 2 and "unknown input 'v'" in typo.stderr and "did you mean 'v0'?" in typo.stderr
    wrong = cluster.run("submit", "tests.helpers.flows:chain10", "-i", "v0=one")
    assert (
        wrong.returncode == 2 and "input 'v0' must be int (task 's1', parameter 'x'), not str" in wrong.stderr
    )
    bad_ref = cluster.run("submit", "tests.helpers.flows")
    assert bad_ref.returncode == 2 and "MODULE:FLOW" in bad_ref.stderr


def _event(**fields: Any) -> bytes:
    base = {
        "v": 1,
        "kind": "task.started",
        "id": "x",
        "run": "r",
        "task": "t",
        "attempt": 1,
        "at": 0,
        "body": {"worker": "w"},
    }
    base.update(fields)
    return msgpack.packb(base)


BAD = [
    ("engine", b"\x00\x01 not msgpack \xc1", "application/x-msgpack", "not msgpack"),
    ("engine", _event(kind="no.such.kind"), "application/x-msgpack", "unknown message kind"),
    ("engine", _event(body={}), "application/x-msgpack", "missing field 'worker'"),
    ("engine", b"\x80\x03}q\x00.", "application/x-python-serialize", "content type"),  # pickle
    ("task.default", b"\xc1\xc1", "application/x-msgpack", "not msgpack"),
    (
        "task.default",
        msgpack.packb({"v": 1, "kind": "task.request", "id": "q"}),
        "application/x-msgpack",
        "missing field",
    ),
    ("task.default", _event(), "application/x-msgpack", "takes task requests"),
]


def test_malformed_messages_are_dead_lettered_and_consumers_keep_serving(
    cluster: Processes, client: Client, config: Config
) -> None:
    raw = KombuBroker(config)
    raw.declare(["task.default"])
    for queue, body, ctype, _ in BAD:
        raw.publish_raw(queue, body, ctype)
    # the consumers are still serving: a run goes through after the junk
    rid = client.submit(flows.chain(3), {"v0": 0})
    assert cluster.wait(client, rid).status == "SUCCESS", cluster.logs()
    dead = []
    while len(dead) < len(BAD):
        d = raw.get("dead")
        assert d is not None, f"only {len(dead)} dead letters: {[x.headers for x in dead]}"
        dead.append(d)
        raw.ack(d)
    assert raw.get("dead") is None
    got = sorted((d.headers["x-ackflow-queue"], d.body) for d in dead)
    assert got == sorted((q, b) for q, b, _, _ in BAD)
    for queue, body, _, reason in BAD:
        [d] = [d for d in dead if d.body == body and d.headers["x-ackflow-queue"] == queue]
        assert reason in d.headers["x-ackflow-reason"], d.headers
    raw.close()


def test_topology_declares_and_checks(procs: Processes, config: Config) -> None:
    out = procs.run("topology", "-Q", "other")
    assert out.returncode == 0, out.stderr
    assert f"{config.prefix}.engine" in out.stdout and "x-queue-type" in out.stdout
    assert f"{config.prefix}.task.other" in out.stdout
    check = procs.run("topology", "--check", "-Q", "never-declared")
    assert check.returncode == 1 and "MISSING" in check.stdout


def test_sigterm_lets_the_running_task_finish_then_exits(procs: Processes, client: Client) -> None:
    import signal

    procs.engine()
    worker = procs.worker()
    rid = client.submit(flows.slow_flow, {"seconds": 1.0})
    watch = client.store.watch(rid)
    deadline = time.monotonic() + 60
    while getattr(client.status(rid).tasks.get("slow"), "status", None) != "RUNNING":
        assert time.monotonic() < deadline, f"the slow task never started\n{procs.logs()}"
        watch.wait(2.0)
    watch.close()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, procs.logs()
    procs.retire(worker)
    info = procs.wait(client, rid, 60)  # the engine applies the last result after the worker exits
    assert info.status == "SUCCESS" and info.result == {"slept": 1.0}
    assert not any("redelivery" in h.extra for h in client.history(rid))  # it was not run twice


def test_a_publish_after_the_broker_closed_an_idle_connection_reconnects(config: Config) -> None:
    """A client idle past the heartbeat timeout finds its connection closed: the next
    publish replaces it and goes through (the same message ids: nothing twice)."""
    import shutil

    from runner.broker import ENGINE_QUEUE, Outgoing
    from tests.helpers.ci import require
    from tests.services import close_connections

    require(
        shutil.which("rabbitmqctl") is not None,
        "needs rabbitmqctl to close the connection from the broker's side",
    )
    broker = KombuBroker(config, role="idle-client")
    try:
        broker.publish([Outgoing(ENGINE_QUEUE, "before", b"\x90")])
        assert close_connections("ackflow-idle-client", reason="test: idle") == 1
        broker.publish([Outgoing(ENGINE_QUEUE, "after", b"\x90")])  # no PublishError
        assert broker.depth(ENGINE_QUEUE) == 2
    finally:
        broker.purge(ENGINE_QUEUE)
        broker.close()


def test_engine_and_worker_read_a_config_file(
    procs: Processes, client: Client, config: Config, tmp_path: Any
) -> None:
    """Only the file names the prefix: processes that ignored it would use "ackflow" and the
    run, submitted under the test's prefix, would never finish."""
    path = tmp_path / "ackflow.toml"
    path.write_text(f'prefix = "{config.prefix}"\n[ackflow]\nACKFLOW_REDIS_URL = "{config.redis_url}"\n')
    env = {"ACKFLOW_PREFIX": "", "ACKFLOW_REDIS_URL": "", "ACKFLOW_CONFIG": str(path)}
    procs.engine(env=env)
    procs.worker(env=env)
    rid = client.submit(flows.chain(3), {"v0": 1})
    assert procs.wait(client, rid).result == {"v3": 4}


def test_a_flow_registered_by_a_worker_is_submitted_by_name_where_it_cannot_be_imported(
    procs: Processes, config: Config, tmp_path: Any
) -> None:
    import subprocess

    from tests.helpers.processes import ACKFLOW, cli_env

    procs.engine()
    worker = procs.worker()
    procs.until_logged(worker, "flow chain10 registered")
    env = cli_env(config, PYTHONPATH="")
    elsewhere = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 120}
    cannot = subprocess.run([*ACKFLOW[:-2], "-c", "import tests.helpers.flows"], **elsewhere)  # type: ignore[call-overload]
    assert cannot.returncode != 0 and "No module named 'tests" in cannot.stderr
    out = subprocess.run([*ACKFLOW, "submit", "chain10", "-i", "v0=5", "--wait"], **elsewhere)  # type: ignore[call-overload]
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'result: {"v10": 15}' in out.stdout
    listed = subprocess.run([*ACKFLOW, "flows", "list"], **elsewhere).stdout  # type: ignore[call-overload]
    assert any(line.split()[0] == "chain10" and line.split()[-1] == "v0" for line in listed.splitlines())
    shown = subprocess.run([*ACKFLOW, "flows", "show", "chain10"], **elsewhere).stdout  # type: ignore[call-overload]
    assert "(latest)" in shown and "s10" in shown
    typo = subprocess.run([*ACKFLOW, "submit", "chain1O", "-i", "v0=5"], **elsewhere)  # type: ignore[call-overload]
    assert typo.returncode == 2 and "did you mean 'chain10'" in typo.stderr


def test_a_yaml_flow_is_applied_then_submitted_by_name(cluster: Processes, tmp_path: Any) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        "flow: yaml_two\n"
        "modules: [tests.helpers.flows]\n"
        "items:\n"
        "  - {task: inc, name: s1, rebind: {x: v0}, provides: v1}\n"
        "  - {task: inc, name: s2, rebind: {x: v1}, provides: v2}\n"
    )
    checked = cluster.run("flows", "apply", str(path), "--check")
    assert checked.returncode == 0 and "flow yaml_two ok (2 tasks)" in checked.stdout, checked.stderr
    applied = cluster.run("flows", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    out = cluster.run("submit", "yaml_two", "-i", "v0=40", "--wait")
    assert out.returncode == 0 and 'result: {"v2": 42}' in out.stdout, out.stdout + out.stderr
    path.write_text("flow: bad\nitems:\n  - {task: inc, retyr: 3}\n")
    bad = cluster.run("flows", "apply", str(path))
    assert bad.returncode == 2 and f"{path}:3: items[0].retyr: unknown key 'retyr'" in bad.stderr
