"""The REST API (/v1) served in-process over local mode, with real HTTP requests: every
endpoint's success and refusals (401/403/404/409/400/413), and every answer checked against
the OpenAPI document the server itself serves at /v1/openapi.json."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from runner.client import flows
from runner.config import Config
from runner.errors import ConfigError
from runner.local import LocalRuntime
from runner.ops.http import app as http_app
from runner.ops.http import tokens as api_tokens
from tests.helpers import http_flows as hf
from tests.helpers.openapi_check import check_response, template_of

FULL = "full-" + uuid.uuid4().hex
READ = "read-" + uuid.uuid4().hex
SUBMIT = "submit-" + uuid.uuid4().hex
CONTROL = "control-" + uuid.uuid4().hex
DOC: dict[str, Any] = {}
CHECKED: set[str] = set()  # "METHOD template status" of every answer validated
RAN: set[str] = set()  # the tests of this module that ran


@pytest.fixture(autouse=True)
def _ran(request: pytest.FixtureRequest) -> None:
    RAN.add(request.node.originalname)


def _served(config: Config) -> LocalRuntime:
    rt = LocalRuntime(config)
    http_app.serve_local(rt)
    for f in (hf.echo_flow, hf.hold_flow, hf.lazy_flow, hf.double_flow, hf.boom_flow):
        flows.register(rt.client.store, f.compile(), by="test")
    return rt


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[LocalRuntime]:
    file = tmp_path / "tokens"
    file.write_text(f"# scoped tokens\n{READ} read\n\n{SUBMIT} submit\n{CONTROL}   control,read\n")
    with _served(Config(api_token=FULL, api_tokens_file=str(file))) as runtime:
        yield runtime


def call(
    rt: LocalRuntime,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = FULL,
    raw: bytes | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request; its answer must be JSON and fit the OpenAPI document (for documented paths)."""
    url = urlsplit(rt.server.url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    headers = {"Content-Length": str(len(data)), "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if host is not None:
        headers["Host"] = host
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if data:
            conn.send(data)
        resp = conn.getresponse()
        status, payload = resp.status, resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    assert got.get("content-type", "").startswith("application/json"), (status, payload[:200])
    answer = json.loads(payload)
    if not DOC:
        DOC.update(fetch_document(rt))
    errors = check_response(DOC, method, path, status, got, answer)
    assert not errors, errors
    CHECKED.add(f"{method} {template_of(DOC, method, path.split('?')[0])} {status}")
    if status >= 400 and path.split("?")[0] not in ("/v1/complete", "/v1/fail"):  # the one error shape
        assert set(answer) == {"error"} and set(answer["error"]) == {"type", "message"}
    return status, got, answer


def fetch_document(rt: LocalRuntime) -> dict[str, Any]:
    url = urlsplit(rt.server.url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", "/v1/openapi.json")
        resp = conn.getresponse()
        assert resp.status == 200
        doc: dict[str, Any] = json.loads(resp.read())
        return doc
    finally:
        conn.close()


def wait_task(rt: LocalRuntime, rid: str, task: str, status: str) -> None:
    watch = rt.client.store.watch(rid)
    try:
        for _ in range(300):
            t = rt.client.status(rid).tasks.get(task)
            if t is not None and t.status == status:
                return
            watch.wait(0.2)
    finally:
        watch.close()
    raise AssertionError(f"{task} of {rid} never became {status}")


def submit(rt: LocalRuntime, flow: str, inputs: dict[str, Any], **extra: Any) -> str:
    code, headers, answer = call(rt, "POST", "/v1/runs", {"flow": flow, "inputs": inputs, **extra})
    assert code == 201, answer
    assert headers["location"] == f"/v1/runs/{answer['run_id']}"
    return str(answer["run_id"])


# --- the document ----------------------------------------------------------------------------


def test_the_document_is_served_without_a_token_and_names_every_endpoint(rt: LocalRuntime) -> None:
    doc = fetch_document(rt)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/complete",
        "/v1/fail",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/history",
        *(f"/v1/runs/{{run_id}}/{a}" for a in ("cancel", "pause", "resume", "retry")),
        "/v1/runs/{run_id}/tasks/{task}/complete",
        "/v1/runs/{run_id}/tasks/{task}/fail",
        "/v1/flows",
        "/v1/flows/{name}",
        "/v1/workers",
        "/v1/queues",
        "/v1/schedules",
        "/v1/schedules/{name}",
        "/v1/schedules/{name}/pause",
        "/v1/schedules/{name}/resume",
    }
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["security"] and all(code.isdigit() for code in op["responses"])


# --- submit, read, list -----------------------------------------------------------------------


def test_submit_by_name_then_read_the_run_its_history_and_the_list(rt: LocalRuntime) -> None:
    rid = submit(rt, "http_echo_flow", {"x": {"a": [1, 2]}}, run_id="rest-echo-1", deadline_s=60)
    assert rid == "rest-echo-1"
    # idempotent by run id: the same again is the same run
    assert submit(rt, "http_echo_flow", {"x": {"a": [1, 2]}}, run_id="rest-echo-1", deadline_s=60) == rid
    assert rt.client.wait(rid, timeout_s=60).status == "SUCCESS"
    code, _, run = call(rt, "GET", f"/v1/runs/{rid}")
    assert code == 200 and run["status"] == "SUCCESS" and run["flow"] == "http_echo_flow"
    assert run["inputs"] == {"x": {"a": [1, 2]}} and run["tasks"]["echo"]["status"] == "SUCCESS"
    code, _, hist = call(rt, "GET", f"/v1/runs/{rid}/history", token=READ)
    assert code == 200 and hist["history"][-1]["to"] == "SUCCESS"
    assert any(e["scope"] == "echo" and e["to"] == "SUCCESS" for e in hist["history"])
    code, _, later = call(rt, "GET", f"/v1/runs/{rid}/history?start=2", token=READ)
    assert code == 200 and later["history"] == hist["history"][2:]
    # a different body under the same id: 409
    code, _, answer = call(
        rt, "POST", "/v1/runs", {"flow": "http_echo_flow", "inputs": {"x": 2}, "run_id": rid}
    )
    assert code == 409 and answer["error"]["type"] == "run_conflict" and rid in answer["error"]["message"]
    # without a run id, one is made
    other = submit(
        rt, "http_echo_flow", {"x": 3}, version=flows.info(rt.client.store, "http_echo_flow").digest[:8]
    )
    assert rt.client.wait(other, timeout_s=60).status == "SUCCESS"


def test_the_list_filters_and_pages_like_the_dashboard(rt: LocalRuntime) -> None:
    rids = [submit(rt, "http_echo_flow", {"x": i}) for i in range(3)]
    for rid in rids:
        rt.client.wait(rid, timeout_s=60)
    boom = submit(rt, "http_boom_flow", {"x": 1})
    assert rt.client.wait(boom, timeout_s=60).status == "FAILED"
    code, _, page = call(rt, "GET", "/v1/runs?flow=http_echo_flow&status=SUCCESS&limit=2", token=READ)
    assert code == 200 and len(page["runs"]) == 2 and page["next_before"] is not None
    assert {r["flow"] for r in page["runs"]} == {"http_echo_flow"}
    code, _, rest = call(
        rt, "GET", f"/v1/runs?flow=http_echo_flow&status=SUCCESS&before={page['next_before']}"
    )
    seen = [r["run_id"] for r in page["runs"] + rest["runs"]]
    assert sorted(seen) == sorted(rids)
    code, _, failed = call(rt, "GET", "/v1/runs?status=FAILED")
    assert [r["run_id"] for r in failed["runs"]] == [boom]
    for bad, word in (
        ("status=DONE", "status must be one of"),
        ("limit=0", "limit must be a whole number from 1 to 200"),
        ("limit=abc", "limit"),
        ("before=-1", "before"),
        ("colour=red", "unknown query parameter 'colour'"),
    ):
        code, _, answer = call(rt, "GET", f"/v1/runs?{bad}")
        assert code == 400 and word in answer["error"]["message"], (bad, answer)


def test_bad_submissions_get_a_400_that_says_what_is_wrong(rt: LocalRuntime) -> None:
    cases: list[tuple[Any, str, str]] = [
        ({"flow": "no_such_flow"}, "unknown_flow", "no_such_flow"),
        ({"flow": "http_echo_flow", "inputs": {"y": 1}}, "unknown_input", "'y'"),
        ({"flow": "http_echo_flow", "inputs": {}}, "missing_input", "'x'"),
        ({"flow": "http_double_flow", "inputs": {"n": "two"}}, "input_type", "'n'"),
        ({"flow": "http_echo_flow", "inputs": {"x": 1}, "version": "ffffffff"}, "unknown_flow", "ffffffff"),
        ({"flow": "http_echo_flow", "inputs": {"x": 1}, "run_id": "a b"}, "bad_request", "a b"),
        ({"flow": "http_echo_flow", "inputs": {"x": 1}, "deadline_s": 0}, "bad_request", "deadline_s"),
        ({"flow": "http_echo_flow", "inputs": {"x": 1}, "deadline_s": "1"}, "bad_request", "deadline_s"),
        ({"flow": "http_echo_flow", "inputs": [1]}, "bad_request", "inputs"),
        ({"flow": "http_echo_flow", "input": {"x": 1}}, "bad_request", "unknown field 'input'"),
        ({"inputs": {}}, "bad_request", '"flow"'),
        ({"flow": "http_echo_flow", "run_id": 7, "inputs": {"x": 1}}, "bad_request", "run_id"),
    ]
    for body, kind, word in cases:
        code, _, answer = call(rt, "POST", "/v1/runs", body)
        assert code == 400 and answer["error"]["type"] == kind, (body, answer)
        assert word in answer["error"]["message"], (body, answer)
    for raw, word in ((b"{not json", "malformed JSON"), (b"[1, 2]", "JSON object"), (b"", "malformed JSON")):
        code, _, answer = call(rt, "POST", "/v1/runs", raw=raw)
        assert code == 400 and word in answer["error"]["message"], (raw, answer)
    assert rt.client.page()[0] == []  # nothing was submitted


def test_a_deadline_an_engine_cannot_keep_is_refused_before_anything_is_sent(rt: LocalRuntime) -> None:
    """Regression: an infinite or astronomically far deadline was accepted, and the engine
    then dead-lettered the submit: the run stayed PENDING forever under its reserved id."""
    for deadline in (float("inf"), float("nan"), 1e300):
        with pytest.raises(ValueError, match="timeout_s must be"):
            rt.client.submit(hf.echo_flow, {"x": 1}, timeout_s=deadline)
    body = {"flow": "http_echo_flow", "inputs": {"x": 1}, "deadline_s": 1e300}
    code, _, answer = call(rt, "POST", "/v1/runs", body)
    assert code == 400 and "deadline_s" in answer["error"]["message"], answer
    code, _, answer = call(rt, "POST", "/v1/runs", raw=b'{"flow": "http_echo_flow", "deadline_s": Infinity}')
    assert code == 400 and "Infinity" in answer["error"]["message"], answer
    assert rt.client.page()[0] == []
    from click.testing import CliRunner

    from runner.ops import cli

    args = ["submit", "tests.helpers.http_flows:echo_flow", "-i", "x=1", "--deadline", "inf"]
    out = CliRunner().invoke(cli.load_plugins(), args, env={"ACKFLOW_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert out.exit_code == 2 and "--deadline" in out.output, out.output


def test_bodies_over_the_payload_limit_are_refused(rt: LocalRuntime) -> None:
    limit = rt.config.max_payload_bytes
    big = {"flow": "http_echo_flow", "inputs": {"x": "a" * (limit + 10)}}
    code, _, answer = call(rt, "POST", "/v1/runs", big)
    assert code == 413 and answer["error"]["type"] == "payload_too_large"
    # under the body limit, over the submit message's (spec + inputs)
    near = {"flow": "http_echo_flow", "inputs": {"x": "a" * (limit - 200)}}
    code, _, answer = call(rt, "POST", "/v1/runs", near)
    assert code == 413 and "submit message" in answer["error"]["message"]


# --- authentication -----------------------------------------------------------------------------


def test_tokens_and_scopes(rt: LocalRuntime) -> None:
    body = {"flow": "http_echo_flow", "inputs": {"x": 1}}
    code, headers, answer = call(rt, "POST", "/v1/runs", body, token=None)
    assert code == 401 and "Bearer" in answer["error"]["message"] and "Bearer" in headers["www-authenticate"]
    code, headers, answer = call(rt, "GET", "/v1/runs", token=FULL + "x")
    assert code == 401 and answer["error"]["message"] == "invalid API token"
    assert 'error="invalid_token"' in headers["www-authenticate"]
    code, _, _ = call(rt, "GET", "/v1/flows", token="")
    assert code == 401
    code, _, answer = call(rt, "POST", "/v1/runs", body, token=READ)
    assert (
        code == 403
        and answer["error"]["type"] == "insufficient_scope"
        and "'submit'" in answer["error"]["message"]
    )
    code, _, answer = call(rt, "GET", "/v1/runs", token=SUBMIT)
    assert code == 403 and "'read'" in answer["error"]["message"]
    code, _, answer = call(rt, "POST", "/v1/runs/any/cancel", token=SUBMIT)
    assert code == 403 and "'control'" in answer["error"]["message"]
    code, _, answer = call(rt, "POST", "/v1/runs/any/tasks/t/complete", {"result": 1}, token=READ)
    assert code == 403
    # a token's scopes are what it is given, and only those
    rid = submit(rt, "http_echo_flow", {"x": 1})
    assert call(rt, "POST", "/v1/runs", {**body, "run_id": "by-submit"}, token=SUBMIT)[0] == 201
    assert call(rt, "GET", f"/v1/runs/{rid}", token=CONTROL)[0] == 200  # control,read
    assert call(rt, "GET", "/v1/flows", token=READ)[0] == 200
    # a token is checked whatever the Host (the API is for other machines)
    assert call(rt, "GET", "/v1/flows", token=READ, host="api.example.com")[0] == 200


def test_every_endpoint_refuses_a_missing_or_unknown_token_and_a_token_without_its_scope(
    rt: LocalRuntime,
) -> None:
    rid = submit(rt, "http_echo_flow", {"x": 1})
    doc = fetch_document(rt)
    for template, ops in doc["paths"].items():
        path = template.replace("{run_id}", rid).replace("{task}", "echo").replace("{name}", "http_echo_flow")
        for method, op in ops.items():
            if "bearer" not in op["security"][0]:
                continue  # /v1/complete and /v1/fail: the completion token (test_http_server.py)
            scope = op["security"][0]["bearer"][0]
            body = {"flow": "http_echo_flow", "inputs": {"x": 1}} if method == "post" else None
            assert call(rt, method.upper(), path, body, token=None)[0] == 401, path
            assert call(rt, method.upper(), path, body, token=READ[::-1])[0] == 401, path
            lacking = SUBMIT if scope == "read" else READ
            code, _, answer = call(rt, method.upper(), path, body, token=lacking)
            assert code == 403 and f"'{scope}'" in answer["error"]["message"], (path, answer)
    assert [r.run_id for r in rt.client.page()[0]] == [rid]  # nothing was submitted


def test_without_a_configured_token_the_api_takes_no_writes_and_reads_only_by_own_name() -> None:
    with _served(Config()) as rt:
        code, _, answer = call(
            rt, "POST", "/v1/runs", {"flow": "http_echo_flow", "inputs": {"x": 1}}, token=None
        )
        assert code == 403 and answer["error"]["type"] == "writes_disabled"
        assert "ACKFLOW_API_TOKEN" in answer["error"]["message"]
        code, _, answer = call(rt, "POST", "/v1/runs/x/cancel", token="anything-at-all-long")
        assert code == 403 and answer["error"]["type"] == "writes_disabled"
        assert call(rt, "GET", "/v1/flows", token=None)[0] == 200  # Host: 127.0.0.1:port
        assert call(rt, "GET", "/v1/workers", token=None)[0] == 200
        assert call(rt, "GET", "/v1/queues", token=None, host="evil.example")[0] == 403
        code, _, answer = call(rt, "GET", "/v1/runs", token=None, host="evil.example:80")
        assert code == 403 and "host names" in answer["error"]["message"]
        assert rt.client.page()[0] == []


def test_the_tokens_file_is_checked_line_by_line(tmp_path: Path) -> None:
    good = "a" * 16
    parsed = api_tokens.parse_tokens_file(f"# c\n{good} read,control\n")
    assert parsed == [(good, frozenset({"read", "control"}))]
    for text, word in (
        (f"{good}\n", "line 1: expected"),
        (f"\n{good} read admin\n", "line 2: expected"),
        (f"{good} read,admin\n", "unknown scope admin"),
        ("short read\n", "at least 16 characters"),
    ):
        with pytest.raises(ConfigError, match=word):
            api_tokens.parse_tokens_file(text)
    with pytest.raises(ConfigError, match="at least 16"):
        api_tokens.load("short", "")
    with pytest.raises(ConfigError, match="cannot be read"):
        api_tokens.load("", str(tmp_path / "missing"))
    tokens = api_tokens.load(good, "")
    assert tokens.scopes(good) == frozenset(api_tokens.SCOPES)
    cfg = Config(api_token=good)
    assert cfg.shown()["api_token"] == "***" and good not in repr(cfg)
    assert tokens.scopes(good + "a") is None and tokens.scopes("") is None


# --- not found ------------------------------------------------------------------------------------


def test_unknown_runs_flows_and_actions_are_404(rt: LocalRuntime) -> None:
    for method, path, body, kind in (
        ("GET", "/v1/runs/nope", None, "run_not_found"),
        ("GET", "/v1/runs/nope/history", None, "run_not_found"),
        ("POST", "/v1/runs/nope/cancel", None, "run_not_found"),
        ("POST", "/v1/runs/nope/retry", {"reason": "x"}, "run_not_found"),
        ("POST", "/v1/runs/nope/tasks/t/complete", {"result": 1}, "run_not_found"),
        ("GET", "/v1/flows/nope", None, "unknown_flow"),
    ):
        code, _, answer = call(rt, method, path, body)
        assert code == 404 and answer["error"]["type"] == kind, (path, answer)
        assert "nope" in answer["error"]["message"]
    # undocumented paths still answer in the one error shape
    for method, path in (
        ("POST", "/v1/runs/x/explode"),
        ("POST", "/v1/runs/x/tasks/t/approve"),
        ("GET", "/v1/nothing"),
    ):
        code, _, answer = _raw_json(rt, method, path)
        assert code == 404 and set(answer["error"]) == {"type", "message"}, (path, answer)
    code, _, answer = _raw_json(rt, "POST", "/v1/flows")
    assert code == 405 and answer["error"]["type"] == "method_not_allowed"


def _raw_json(rt: LocalRuntime, method: str, path: str) -> tuple[int, dict[str, str], Any]:
    url = urlsplit(rt.server.url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=b"", headers={"Authorization": f"Bearer {FULL}"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


# --- control ----------------------------------------------------------------------------------------


def test_pause_resume_cancel_and_retry_with_409_when_the_state_forbids(rt: LocalRuntime) -> None:
    gate = uuid.uuid4().hex
    hf.GATES[gate] = threading.Event()
    rid = submit(rt, "http_hold_flow", {"x": 1, "gate": gate})
    wait_task(rt, rid, "hold", "RUNNING")
    try:
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/resume", token=CONTROL)
        assert code == 409 and answer["error"]["type"] == "invalid_state"
        assert "it is RUNNING" in answer["error"]["message"]
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/pause", {"reason": "maintenance"}, token=CONTROL)
        assert (code, answer) == (200, {"run_id": rid, "status": "PAUSED"})
        assert rt.client.status(rid).control["reason"] == "maintenance"  # type: ignore[index]
        assert call(rt, "POST", f"/v1/runs/{rid}/pause", token=CONTROL)[0] == 409
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/resume?wait=30", token=CONTROL)
        assert (code, answer["status"]) == (200, "RUNNING")
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/retry")
        assert code == 409 and "only FAILED runs" in answer["error"]["message"]
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/cancel?wait=99")
        assert code == 400 and "wait must be" in answer["error"]["message"]
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/cancel", raw=b"[]")
        assert code == 400
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/cancel", {"reason": 5})
        assert code == 400 and '"reason"' in answer["error"]["message"]
        code, _, answer = call(rt, "POST", f"/v1/runs/{rid}/cancel")
        assert (code, answer["status"]) == (200, "CANCELLED")
        assert call(rt, "POST", f"/v1/runs/{rid}/cancel")[0] == 409
    finally:
        hf.GATES[gate].set()
    boom = submit(rt, "http_boom_flow", {"x": 2})
    assert rt.client.wait(boom, timeout_s=60).status == "FAILED"
    code, _, answer = call(rt, "POST", f"/v1/runs/{boom}/retry", token=CONTROL)
    assert code == 200 and answer["status"] in ("RUNNING", "FAILED")
    assert rt.client.wait(boom, timeout_s=60).status == "FAILED"


# --- waiting tasks --------------------------------------------------------------------------------


def test_operators_complete_and_fail_waiting_tasks_by_run_and_task(rt: LocalRuntime) -> None:
    done = submit(rt, "http_lazy_flow", {"x": 1})
    failed = submit(rt, "http_lazy_flow", {"x": 2})
    wait_task(rt, done, "wait_approval", "WAITING")
    wait_task(rt, failed, "wait_approval", "WAITING")
    base = f"/v1/runs/{done}/tasks"
    code, _, answer = call(rt, "POST", f"{base}/wait_approval/complete", {}, token=CONTROL)
    assert code == 400 and '"result"' in answer["error"]["message"]
    code, _, answer = call(rt, "POST", f"{base}/nope/complete", {"result": 1}, token=CONTROL)
    assert code == 404 and answer["error"]["type"] == "task_not_found"
    code, _, answer = call(
        rt, "POST", f"{base}/wait_approval/complete?wait=30", {"result": True}, token=CONTROL
    )
    assert (code, answer) == (200, {"status": "completed", "run_id": done, "task": "wait_approval"})
    assert rt.client.wait(done, timeout_s=60).result == {"approved": True}
    code, _, answer = call(rt, "POST", f"{base}/wait_approval/complete", {"result": False}, token=CONTROL)
    assert code == 409 and answer["error"]["type"] == "already_completed"
    code, _, answer = call(rt, "POST", f"/v1/runs/{failed}/tasks/wait_approval/fail", {"type": "X"})
    assert code == 400 and '"error"' in answer["error"]["message"]
    code, _, answer = call(
        rt, "POST", f"/v1/runs/{failed}/tasks/wait_approval/fail", {"error": "rejected", "type": "Rejected"}
    )
    assert (code, answer["status"]) == (200, "failed")
    info = rt.client.wait(failed, timeout_s=60)
    assert info.status == "FAILED" and info.tasks["wait_approval"].error["type"] == "Rejected"  # type: ignore[index]


def test_the_token_completion_endpoints_answer_as_documented(rt: LocalRuntime) -> None:
    rid = submit(rt, "http_lazy_flow", {"x": 1})
    other = submit(rt, "http_lazy_flow", {"x": 2})
    wait_task(rt, rid, "wait_approval", "WAITING")
    wait_task(rt, other, "wait_approval", "WAITING")
    token = rt.client.token_for(rid, "wait_approval")
    for path, body in (("/v1/complete", {"result": 1}), ("/v1/fail", {"error": "no"})):
        assert call(rt, "POST", path, body, token=None)[0] == 401
        assert call(rt, "POST", path, body, token=token[:-4] + "AAAA")[0] == 403
    assert call(rt, "POST", "/v1/complete", {}, token=token)[0] == 400
    code, _, answer = call(rt, "POST", "/v1/complete?wait=30", {"result": 1}, token=token)
    assert (code, answer["status"]) == (200, "completed")
    code, _, answer = call(rt, "POST", "/v1/complete", {"result": 1}, token=token)
    assert code == 409 and answer["status"] == "already completed"
    code, _, answer = call(
        rt, "POST", "/v1/fail?wait=30", {"error": "no"}, token=rt.client.token_for(other, "wait_approval")
    )
    assert (code, answer["status"]) == (200, "failed")


def test_completing_a_task_needs_the_secret(rt: LocalRuntime) -> None:
    server = http_app.make_server(
        "127.0.0.1",
        0,
        rt.client_factory,
        rt.config.max_payload_bytes,
        completions=False,
        api_tokens=api_tokens.load(FULL, ""),
    ).start()
    try:
        url = urlsplit(server.url)
        assert url.hostname and url.port
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request(
            "POST",
            "/v1/runs/r/tasks/t/complete",
            body=b'{"result": 1}',
            headers={"Authorization": f"Bearer {FULL}"},
        )
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        assert resp.status == 503 and "ACKFLOW_SECRET" in answer["error"]["message"]
        assert not check_response(
            DOC or fetch_document(rt), "POST", "/v1/runs/r/tasks/t/complete", 503, {}, answer
        )
    finally:
        server.shutdown()
        server.server_close()
        server.close_clients()


# --- flows ------------------------------------------------------------------------------------------


def test_workers_and_queues_are_reads(rt: LocalRuntime) -> None:
    code, _, answer = call(rt, "GET", "/v1/workers", token=READ)
    assert code == 200 and isinstance(answer["workers"], list)
    code, _, answer = call(rt, "GET", "/v1/queues", token=READ)
    assert code == 200 and isinstance(answer["queues"], list)


def test_flows_list_and_show(rt: LocalRuntime) -> None:
    code, _, answer = call(rt, "GET", "/v1/flows", token=READ)
    names = [f["name"] for f in answer["flows"]]
    assert code == 200 and "http_echo_flow" in names and names == sorted(names)
    code, _, flow = call(rt, "GET", "/v1/flows/http_double_flow", token=READ)
    assert code == 200 and flow["inputs"] == ["n"] and flow["tasks"] == ["double"]
    assert flow["digests"] == [flow["digest"]] and flow["versions"] == 1


# --- the CLI by run and task, through the REST API ---------------------------------------------------


def test_the_cli_completes_by_run_and_task_through_the_rest_api(rt: LocalRuntime) -> None:
    from click.testing import CliRunner

    from runner.ops import cli

    main = cli.load_plugins()
    env = {"ACKFLOW_REDIS_URL": "redis://127.0.0.1:1/0", "ACKFLOW_API_TOKEN": CONTROL}
    rid = submit(rt, "http_lazy_flow", {"x": 1})
    wait_task(rt, rid, "wait_approval", "WAITING")
    url = rt.server.url
    args = ["complete", "--run", rid, "--task", "wait_approval", "--result", "true", "--url", url]
    no_token = CliRunner().invoke(main, args, env={**env, "ACKFLOW_API_TOKEN": ""})
    assert no_token.exit_code == 2 and "ACKFLOW_API_TOKEN is not set" in no_token.output
    both = CliRunner().invoke(main, ["complete", "tok", "--run", rid, "--task", "t", "--url", url], env=env)
    assert both.exit_code == 2 and "not both" in both.output
    read_only = CliRunner().invoke(main, args, env={**env, "ACKFLOW_API_TOKEN": READ})
    assert read_only.exit_code == 2 and "lacks the 'control' scope" in read_only.output
    gone = CliRunner().invoke(main, [*args[:2], "no-such-run", *args[3:]], env=env)
    assert gone.exit_code == 5 and "no run with id 'no-such-run'" in gone.output
    ok = CliRunner().invoke(main, [*args, "--wait", "30"], env=env)
    assert ok.exit_code == 0 and ok.output.splitlines()[-1] == "completed", ok.output
    again = CliRunner().invoke(main, args, env=env)
    assert again.exit_code == 6 and "already completed" in again.output
    assert rt.client.wait(rid, timeout_s=60).result == {"approved": True}


# --- schedules (issue 17, item 5) ----------------------------------------------------------------


def test_schedules_are_added_listed_shown_paused_resumed_and_deleted(rt: LocalRuntime) -> None:
    body = {"name": "nightly", "flow": "http_echo_flow", "inputs": {"x": 3}, "cron": "30 2 * * *",
            "tz": "Europe/Paris", "overlap": "allow", "catchup": "all", "catchup_window": "2h"}  # fmt: skip
    code, headers, added = call(rt, "POST", "/v1/schedules", body, token=SUBMIT)
    assert code == 201 and headers["location"] == "/v1/schedules/nightly", added
    assert added["cron"] == "30 2 * * *" and added["catchup_window_s"] == 7200 and added["state"] == "active"
    assert call(rt, "POST", "/v1/schedules", {"name": "often", "flow": "http_echo_flow",
                "inputs": {"x": 1}, "every": 600})[0] == 201  # fmt: skip
    code, _, listed = call(rt, "GET", "/v1/schedules", token=READ)
    assert code == 200 and [s["name"] for s in listed["schedules"]] == ["nightly", "often"]
    assert call(rt, "GET", "/v1/schedules/often", token=READ)[2]["every_s"] == 600
    code, _, paused = call(rt, "POST", "/v1/schedules/nightly/pause", token=CONTROL)
    assert code == 200 and paused["paused"] and paused["state"] == "paused"
    code, _, resumed = call(rt, "POST", "/v1/schedules/nightly/resume", token=CONTROL)
    assert code == 200 and resumed["state"] == "active" and resumed["next_ms"] > 0
    assert call(rt, "DELETE", "/v1/schedules/often", token=CONTROL)[2] == {"name": "often", "deleted": True}
    for method, path in (("GET", "/v1/schedules/often"), ("DELETE", "/v1/schedules/often"),
                         ("POST", "/v1/schedules/often/pause"), ("POST", "/v1/schedules/often/resume")):  # fmt: skip
        code, _, answer = call(rt, method, path)
        assert code == 404 and answer["error"]["type"] == "schedule_not_found", (path, answer)
    code, _, answer = _raw_json(rt, "POST", "/v1/schedules/nightly/explode")
    assert code == 404 and "no such action" in answer["error"]["message"]


def test_a_one_shot_schedule_runs_in_local_mode(rt: LocalRuntime) -> None:
    """``at`` now: the embedded engine's timer loop fires it; the run has the id asked for."""
    now = int(time.time() * 1000)
    body = {"name": "once", "flow": "http_echo_flow", "inputs": {"x": 4}, "at": now, "run_id": "once-run"}
    assert call(rt, "POST", "/v1/schedules", body)[0] == 201
    deadline = time.monotonic() + 30
    while rt.client.schedules.get("once").next_ms is not None:  # until the engine fired it
        assert time.monotonic() < deadline, "the embedded engine never fired the schedule"
        time.sleep(0.05)
    info = rt.client.wait("once-run", 30)
    assert info.status == "SUCCESS" and info.result == {"y": 4}
    assert call(rt, "GET", "/v1/schedules/once")[2]["state"] == "done"
    assert call(rt, "POST", "/v1/schedules", {**SCHEDULE_OK, "name": "held", "cron": "0 9 * * 1-5", "every": None,
                "tz": "Europe/Paris"})[0] == 201  # fmt: skip
    assert call(rt, "POST", "/v1/schedules/held/pause")[0] == 200
    assert call(rt, "POST", "/v1/schedules", {**SCHEDULE_OK, "name": "ticking", "every": "1h"})[0] == 201
    page = _page(rt, "/schedules")  # the dashboard's Schedules page
    assert 'href="/schedules"' in page and "<h1>Schedules (3)</h1>" in page
    once = _row(page, "once")
    assert "done" in once and 'href="/runs/once-run"' in once and "at " in once
    held = _row(page, "held")
    assert "b-PAUSED" in held and "cron 0 9 * * 1-5 (Europe/Paris)" in held
    ticking = _row(page, "ticking")
    assert "active" in ticking and "every 3600s" in ticking and "(in 60 min)" in ticking


def _page(rt: LocalRuntime, path: str) -> str:
    url = urlsplit(rt.server.url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        return resp.read().decode()
    finally:
        conn.close()


def _row(page: str, name: str) -> str:
    start = page.index(f'<tr data-schedule="{name}">')
    return page[start : page.index("</tr>", start)]


SCHEDULE_OK = {"name": "s", "flow": "http_echo_flow", "inputs": {"x": 1}, "every": "1m"}
BAD_SCHEDULES = [
    ({**SCHEDULE_OK, "when": "daily"}, "bad_request", "unknown field 'when'"),
    ({"flow": "http_echo_flow", "every": 60}, "bad_request", 'needs "name"'),
    ({"name": "s", "every": 60}, "bad_request", 'needs "flow"'),
    ({**SCHEDULE_OK, "inputs": [1]}, "bad_request", '"inputs" must be a JSON object'),
    ({**SCHEDULE_OK, "every": True}, "bad_request", '"every" must be'),
    ({**SCHEDULE_OK, "tz": 5}, "bad_request", '"tz" must be a string'),
    ({**SCHEDULE_OK, "name": "bad name"}, "invalid_schedule", "bad schedule name"),
    ({**SCHEDULE_OK, "every": None, "cron": "61 * * * *"}, "invalid_schedule", "bad cron expression"),
    ({**SCHEDULE_OK, "every": None, "cron": "* * * * *", "tz": "Atlantis"}, "invalid_schedule", "time zone"),
    ({**SCHEDULE_OK, "every": "ten minutes"}, "invalid_schedule", "not a duration"),
    ({**SCHEDULE_OK, "every": 0}, "invalid_schedule", "seconds"),
    ({**SCHEDULE_OK, "cron": "* * * * *"}, "invalid_schedule", "exactly one"),
    ({**SCHEDULE_OK, "every": None, "at": "2001-01-01T00:00Z"}, "invalid_schedule", "in the past"),
    ({**SCHEDULE_OK, "every": None, "in": "5m", "at": "2099-01-01T00:00Z"}, "invalid_schedule", "not both"),
    ({**SCHEDULE_OK, "run_id": "r1"}, "invalid_schedule", "one-shot"),
    ({**SCHEDULE_OK, "overlap": "sometimes"}, "invalid_schedule", "overlap policy"),
    ({**SCHEDULE_OK, "catchup": "none", "catchup_window": "1h"}, "invalid_schedule", "window"),
    ({**SCHEDULE_OK, "flow": "nope"}, "unknown_flow", "no flow named 'nope'"),
    ({**SCHEDULE_OK, "version": "ffff"}, "unknown_flow", "no registered version"),
    ({**SCHEDULE_OK, "inputs": {"x": 1, "y": 2}}, "unknown_input", "'y'"),
    ({**SCHEDULE_OK, "inputs": {}}, "missing_input", "'x'"),
]


@pytest.mark.parametrize(("body", "kind", "says"), BAD_SCHEDULES, ids=[b[2] for b in BAD_SCHEDULES])
def test_bad_schedules_get_a_400_that_says_what_is_wrong(
    rt: LocalRuntime, body: dict[str, Any], kind: str, says: str
) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    code, _, answer = call(rt, "POST", "/v1/schedules", body)
    assert code == 400 and answer["error"]["type"] == kind and says in answer["error"]["message"], answer
    assert call(rt, "GET", "/v1/schedules")[2] == {"schedules": []}


def test_a_taken_schedule_name_is_a_409_and_bad_bodies_a_400_or_413(rt: LocalRuntime) -> None:
    assert call(rt, "POST", "/v1/schedules", SCHEDULE_OK)[0] == 201
    code, _, answer = call(rt, "POST", "/v1/schedules", {**SCHEDULE_OK, "every": "2m"})
    assert code == 409 and answer["error"]["type"] == "schedule_conflict"
    assert call(rt, "POST", "/v1/schedules", raw=b"{not json")[0] == 400
    assert call(rt, "POST", "/v1/schedules", [1, 2])[0] == 400
    big = {**SCHEDULE_OK, "name": "big", "inputs": {"x": "y" * (rt.config.max_payload_bytes + 10)}}
    assert call(rt, "POST", "/v1/schedules", big)[0] == 413


# --- coverage of the document (last) ------------------------------------------------------------


def test_every_endpoint_answered_its_success_and_its_refusals() -> None:
    """Once the module's other tests ran: each endpoint was seen succeeding (its first
    documented 2xx) and refusing (each documented 4xx but 413/503, on the endpoints taking
    bodies or touching runs), every answer checked against the document."""
    others = {n for n, v in globals().items() if n.startswith("test_") and callable(v)} - {
        "test_every_endpoint_answered_its_success_and_its_refusals"
    }
    if not others <= RAN:
        pytest.skip("run with the whole module")
    missing = []
    for template, ops in DOC["paths"].items():
        for method, op in ops.items():
            codes = sorted(op["responses"])
            success = next(c for c in codes if c.startswith("2"))
            for code in [success, "401", "403"]:
                if f"{method.upper()} {template} {code}" not in CHECKED:
                    missing.append(f"{method.upper()} {template} {code}")
    assert not missing, missing
