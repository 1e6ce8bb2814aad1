"""The HTTP server under hostile or odd input: every request gets an answer, refusals change
nothing, control needs a same-site operator session. Served in-process over local mode."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from runner.config import Config
from runner.local import LocalRuntime
from runner.ops.http.app import serve_local
from tests.helpers import semantic_flows as sf

pytestmark = pytest.mark.services
OPERATOR = "op-" + uuid.uuid4().hex


@pytest.fixture
def rt(config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)  # the tasks' gates
    with LocalRuntime(Config(operator_token=OPERATOR)) as runtime:
        serve_local(runtime)
        yield runtime


def request(
    rt: LocalRuntime, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(rt.server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest(method, path)
        hdrs = {"Content-Length": str(len(body)), **(headers or {})}
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def running_run(rt: LocalRuntime) -> tuple[str, str]:
    gate = f"ackflow-test:gate:{uuid.uuid4().hex}"
    rid = rt.client.submit(sf.pause_flow, {"x": 1, "gate_key": gate})
    watch = rt.client.store.watch(rid)
    deadline = time.monotonic() + 60
    try:
        while not (rt.client._exists(rid) and rt.client.status(rid).tasks["gated_step"].status == "RUNNING"):
            assert time.monotonic() < deadline, f"gated_step never reached RUNNING: {rt.client.status(rid)}"
            watch.wait(0.2)  # woken by the run's commits
    finally:
        watch.close()
    return rid, gate


def test_a_task_that_has_not_started_cannot_be_completed(rt: LocalRuntime) -> None:
    # (a running task can: an outside system may answer before its defer() is recorded)
    rid, gate = running_run(rt)
    token = rt.client.token_for(rid, "after_gate")  # PENDING behind the running gated_step
    body = json.dumps({"result": 5}).encode()
    code, _, raw = request(rt, "POST", "/v1/complete", body, {"Authorization": f"Bearer {token}"})
    assert code == 409 and "PENDING, not running or WAITING" in json.loads(raw)["error"]
    code, _, raw = request(
        rt, "POST", "/v1/fail", json.dumps({"error": "x"}).encode(), {"Authorization": f"Bearer {token}"}
    )
    assert code == 409
    sf.open_gate(gate)
    info = rt.client.wait(rid, 30)
    assert info.status == "SUCCESS" and info.result == {"g2": 3}  # the worker's own result


@pytest.mark.parametrize(
    "path,body,headers,code",
    [
        ("/v1/complete?wait=nan", b"{}", {"Authorization": "Bearer af1.YQ.Yg.c2ln"}, 400),
        ("/v1/complete?wait=-1", b"{}", {"Authorization": "Bearer af1.YQ.Yg.c2ln"}, 400),
        ("/v1/complete", b"[" * 50_000, {"Authorization": "Bearer af1.YQ.Yg.c2ln"}, 400),
        (
            "/v1/complete",
            b'{"result": 1}',
            {"Authorization": "Bearer af1.YQ.Yg.\xc3\xa9\xc3\xa9"},
            403,  # a bad token naming no run: refused like any bad token (was 404: run enumeration)
        ),
        ("/v1/complete", b'{"result": 1}', {"Authorization": "Bearer junk"}, 403),
        ("/v1/complete", b'{"result": 1}', {}, 401),
        ("/v1/complete", b"{}", {"Content-Length": "abc", "Authorization": "Bearer x"}, 400),
        ("/v1/complete", b"{}", {"Content-Length": "-1", "Authorization": "Bearer x"}, 400),
        ("/login", b"token=%C3%A9", {}, 303),
        ("/login", b"", {"Content-Length": "-1"}, 400),
    ],
)
def test_odd_requests_get_an_answer(
    rt: LocalRuntime, path: str, body: bytes, headers: dict[str, str], code: int
) -> None:
    assert request(rt, "POST", path, body, headers)[0] == code


def test_bad_filters_and_unknown_pages(rt: LocalRuntime) -> None:
    assert request(rt, "GET", "/runs?since=garbage")[0] == 400
    assert request(rt, "GET", "/runs?before=%C2%B2")[0] == 200  # not a cursor: ignored
    assert request(rt, "GET", "/runs/%3Cscript%3E")[0] == 404
    assert request(rt, "GET", "/static/../pages.py")[0] == 404


def login(rt: LocalRuntime) -> str:
    code, headers, _ = request(
        rt,
        "POST",
        "/login",
        f"token={OPERATOR}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert code == 303 and "HttpOnly" in headers["Set-Cookie"]
    return headers["Set-Cookie"].split(";")[0]


def test_control_needs_a_same_site_operator_session_and_logout_ends_it(rt: LocalRuntime) -> None:
    rid, gate = running_run(rt)
    cookie = login(rt)
    host = urlsplit(rt.server.url).netloc
    evil = {"Cookie": cookie, "Origin": "http://evil.example"}
    assert request(rt, "POST", f"/runs/{rid}/pause", b"", evil)[0] == 403
    assert (
        request(rt, "POST", f"/runs/{rid}/pause", b"", {"Cookie": cookie, "Sec-Fetch-Site": "cross-site"})[0]
        == 403
    )
    assert rt.client.status(rid).status == "RUNNING"
    assert request(rt, "POST", f"/runs/{rid}/pause", b"", {"Cookie": "ackflow_op=forged"})[0] == 403
    code, headers, _ = request(
        rt, "POST", f"/runs/{rid}/pause", b"", {"Cookie": cookie, "Origin": f"http://{host}"}
    )
    assert code == 303 and "PAUSED" in headers["Location"]
    assert rt.client.status(rid).status == "PAUSED"
    request(rt, "POST", "/logout", b"", {"Cookie": cookie})
    assert (
        request(rt, "POST", f"/runs/{rid}/resume", b"", {"Cookie": cookie})[0] == 403
    )  # the session is over
    assert rt.client.status(rid).status == "PAUSED"
    rt.client.resume(rid)
    sf.open_gate(gate)
    assert rt.client.wait(rid, 30).status == "SUCCESS"
