"""The REST API of a real ``ackflow serve`` process on RabbitMQ + Redis, with an engine and a
worker started by the CLI: a flow the worker registered is submitted by name over raw HTTP
(what curl sends), its waiting task completed by run and task, the run read back; every
answer checked against the served OpenAPI document."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from runner.client import Client, flows
from runner.config import Config
from tests.helpers.openapi_check import check_response
from tests.helpers.processes import Processes

pytestmark = pytest.mark.services

TOKEN = "e2e-" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _redis_for_tasks(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)


def raw_http(
    base: str, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    """One request as bytes on a socket, HTTP/1.1 with Connection: close; the parsed answer."""
    url = urlsplit(base)
    assert url.hostname and url.port
    data = b"" if body is None else json.dumps(body).encode()
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {url.netloc}",
        "Connection: close",
        f"Content-Length: {len(data)}",
    ]
    if body is not None:
        head.append("Content-Type: application/json")
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    with socket.create_connection((url.hostname, url.port), timeout=60) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    top, _, payload = reply.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(payload)


def test_submit_by_name_complete_by_task_and_read_over_raw_http(
    procs: Processes, client: Client, config: Config
) -> None:
    base = procs.serve(env={"ACKFLOW_API_TOKEN": TOKEN})
    procs.engine()
    worker = procs.start("worker", "tests.helpers.semantic_flows")
    procs.until_logged(worker, "flow lazy_flow registered")
    code, _, doc = raw_http(base, "GET", "/v1/openapi.json", token=None)
    assert code == 200

    def call(
        method: str, path: str, body: Any = None, token: str | None = TOKEN
    ) -> tuple[int, dict[str, str], Any]:
        code, headers, answer = raw_http(base, method, path, body, token)
        errors = check_response(doc, method, path, code, headers, answer)
        assert not errors, errors
        return code, headers, answer

    log = f"ackflow-test:log:{uuid.uuid4().hex}"
    submit = {
        "flow": "lazy_flow",
        "inputs": {"user": "ann", "log": log},
        "run_id": f"rest-{uuid.uuid4().hex}",
    }
    assert call("POST", "/v1/runs", submit, token=None)[0] == 401
    code, headers, answer = call("POST", "/v1/runs", submit)
    rid = submit["run_id"]
    assert code == 201 and headers["location"] == f"/v1/runs/{rid}" and answer["run_id"] == rid
    assert call("POST", "/v1/runs", submit)[0] == 201  # idempotent
    code, _, answer = call("POST", "/v1/runs", {**submit, "inputs": {"user": "bob", "log": log}})
    assert code == 409 and answer["error"]["type"] == "run_conflict"
    code, _, answer = call("POST", "/v1/runs", {"flow": "lazy_flow", "inputs": {"usr": "ann", "log": log}})
    assert (
        code == 400 and answer["error"]["type"] == "unknown_input" and "'user'" in answer["error"]["message"]
    )
    watch = client.store.watch(rid)
    try:
        for _ in range(300):
            task = client.status(rid).tasks.get("await_decision")
            if task is not None and task.status == "WAITING":
                break
            watch.wait(0.2)
    finally:
        watch.close()
    code, _, run = call("GET", f"/v1/runs/{rid}")
    assert code == 200 and run["tasks"]["await_decision"]["status"] == "WAITING"
    code, _, answer = call(
        "POST",
        f"/v1/runs/{rid}/tasks/await_decision/complete?wait=30",
        {"result": {"approved": True, "approver": "bob"}},
    )
    assert (code, answer["status"]) == (200, "completed")
    info = procs.wait(client, rid, 60)
    assert info.status == "SUCCESS" and info.result == {"outcome": "ann: granted by bob"}
    code, _, run = call("GET", f"/v1/runs/{rid}")
    assert run["status"] == "SUCCESS" and run["result"] == {"outcome": "ann: granted by bob"}
    code, _, hist = call("GET", f"/v1/runs/{rid}/history")
    assert hist["history"][-1]["to"] == "SUCCESS"
    code, _, page = call("GET", "/v1/runs?flow=lazy_flow&status=SUCCESS")
    assert rid in [r["run_id"] for r in page["runs"]]
    code, _, flow = call("GET", "/v1/flows/lazy_flow")
    assert code == 200 and set(flow["inputs"]) >= {"user", "log"}
    assert TOKEN not in procs.logs()  # API tokens are never logged


# A producer that cannot import the worker's module: a separate interpreter, isolated (-I; -S:
# no site-packages, so not even ackflow), outside the repository, sending the bytes curl sends.
PRODUCER = r"""
import importlib.util, json, socket, sys
assert importlib.util.find_spec("tests") is None and importlib.util.find_spec("runner") is None
host, port, token, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
head = (f"POST /v1/runs HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n")
with socket.create_connection((host, port), timeout=60) as s:
    s.sendall(head.encode() + body)
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
top, _, payload = reply.partition(b"\r\n\r\n")
print(json.dumps({"status": int(top.split()[1]), "answer": json.loads(payload)}))
"""

ORDER_YAML = """\
flow: order_flow
modules: [a_module_serve_must_not_import]
items:
  - task: reserve
  - task: charge
  - task: ship
"""


def test_an_inline_yaml_definition_from_a_process_that_cannot_import_the_module(
    procs: Processes, client: Client, config: Config, tmp_path: Any
) -> None:
    import subprocess
    import sys

    base = procs.serve(env={"ACKFLOW_API_TOKEN": TOKEN})
    procs.engine()
    worker = procs.start("worker", "tests.helpers.semantic_flows")
    procs.until_logged(worker, "tasks catalogued")  # what serve compiles the definition against
    procs.until_logged(worker, "flow order_flow registered")
    url = urlsplit(base)
    log = f"ackflow-test:log:{uuid.uuid4().hex}"
    rid = f"inline-{uuid.uuid4().hex}"

    def produce(body: dict[str, Any]) -> tuple[int, Any]:
        args = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            PRODUCER,
            str(url.hostname),
            str(url.port),
            TOKEN,
            json.dumps(body),
        ]
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env={})
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        return out["status"], out["answer"]

    inputs = {"item": "lamp", "log": log, "fail_ship": False}
    code, answer = produce({"definition": ORDER_YAML, "inputs": inputs, "run_id": rid})
    assert code == 201 and answer["run_id"] == rid and answer["url"] == f"/v1/runs/{rid}", answer
    assert answer["version"] == flows.info(client.store, "order_flow").digest  # the Python flow's spec
    assert produce({"definition": ORDER_YAML, "inputs": inputs, "run_id": rid})[0] == 201
    code, answer = produce({"definition": ORDER_YAML, "inputs": {**inputs, "item": "desk"}, "run_id": rid})
    assert code == 409 and answer["error"]["type"] == "run_conflict"
    code, answer = produce({"definition": ORDER_YAML.replace("task: ship", "task: shipp"), "inputs": inputs})
    assert (
        code == 400
        and "items[2].task: unknown task 'shipp' (did you mean 'ship'?)" in answer["error"]["message"]
    )
    info = procs.wait(client, rid, 60)
    assert info.status == "SUCCESS" and info.result == {"shipped": "sh-ch-res-lamp"}
    # the CLI does the same without -m: `ackflow submit --definition FILE`
    doc = tmp_path / "order.yaml"
    doc.write_text(ORDER_YAML)
    out = procs.run(
        "submit",
        "--definition",
        str(doc),
        "-i",
        "item=chair",
        "-i",
        f"log={log}",
        "-i",
        "fail_ship=false",
        "--wait",
    )
    assert out.returncode == 0 and "sh-ch-res-chair" in out.stdout, out.stdout + out.stderr
    doc.write_text(ORDER_YAML.replace("task: ship", "task: shipp"))
    out = procs.run("submit", "--definition", str(doc), "-i", "item=chair")
    assert out.returncode == 2 and "order.yaml:6: items[2].task: unknown task 'shipp'" in out.stderr, (
        out.stderr
    )
    assert procs.run("submit", "order_flow", "--definition", str(doc)).returncode == 2
