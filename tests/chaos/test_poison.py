"""G5: a task that kills its worker every time is dead-lettered after a bounded number of
deliveries; its run fails with the reason; other runs and the workers go on."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from runner.broker.kombu import KombuBroker
from runner.client import Client
from runner.config import Config
from tests.helpers import flows
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services


def test_poison_task_is_dead_lettered_and_its_run_fails(
    procs: Processes, client: Client, config: Config
) -> None:
    limit = config.delivery_limit
    procs.engine()
    poison = client.submit(flows.poison_flow, {"x": 1})
    healthy = [client.submit(flows.chain(3), {"v0": i}) for i in range(5)]
    deaths = 0
    # A supervisor's job: restart the worker whenever it dies (bounded).
    deadline = time.monotonic() + 240
    while not client.status(poison).done:
        assert deaths <= limit, f"poison task ran {deaths} times, over the limit {limit}"
        worker = procs.worker("-c", "1")
        while worker.poll() is None and not client.status(poison).done:
            assert time.monotonic() < deadline, f"the poison run never ended\n{procs.logs()}"
            try:
                worker.wait(timeout=0.5)
            except subprocess.TimeoutExpired:  # still alive
                pass
        if worker.poll() is not None:
            assert worker.returncode == 3, procs.logs()
            procs.retire(worker)
            deaths += 1
    assert deaths == limit - 1  # delivered `limit` times; the last delivery was not run
    info = client.status(poison)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "PoisonMessage"
    assert f"delivered {limit} times" in info.error["message"]
    for rid in healthy:  # everyone else finished, and the last worker is still serving
        assert procs.wait(client, rid).status == "SUCCESS"
    procs.assert_alive()

    listed = procs.run("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"req:{poison}:kill_worker:1") and "task.default" in line and "poison" in line
    shown = procs.run("dlq", "show", f"req:{poison}:kill_worker:1")
    assert "reason:     poison: task request delivered" in shown.stdout and "TaskRequest(" in shown.stdout
    assert procs.run("dlq", "show", "nope").returncode == 1
    assert procs.run("dlq", "purge", "--yes").stdout.strip() == "purged 1 dead letter(s)"
    assert procs.run("dlq", "list").stdout == ""


def test_dlq_replay_puts_a_letter_back_where_it_came_from(
    procs: Processes, client: Client, config: Config
) -> None:
    raw = KombuBroker(config)
    raw.declare(["task.default"])
    raw.publish_raw("engine", b"\xc1 junk")
    raw.close()
    procs.engine()
    procs.worker()
    rid = client.submit(flows.chain(2), {"v0": 0})
    assert procs.wait(client, rid).status == "SUCCESS"
    listed = procs.run("dlq", "list").stdout.splitlines()
    assert len(listed) == 1 and "engine" in listed[0] and "not msgpack" in listed[0]
    letter_id = listed[0].split()[0]
    out = procs.run("dlq", "replay", letter_id)
    assert out.returncode == 0 and f"replayed {letter_id} to engine" in out.stdout
    # the engine rejects it again, with the same reason: replay really delivered it
    deadline = time.monotonic() + 60
    while not (again := procs.run("dlq", "list").stdout.splitlines()):
        assert time.monotonic() < deadline, f"the replayed letter never came back\n{procs.logs()}"
    assert again[0].split()[0] == letter_id
    assert json.loads(procs.run("status", rid, "--json").stdout)["status"] == "SUCCESS"
