"""The dashboard's "approve / fail" of a waiting task: shown to a logged-in operator only,
refused to anyone else and to another site's POST, applied through the task's token the
server mints (served in-process over local mode, real HTTP)."""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from runner.config import Config
from runner.local import LocalRuntime
from runner.ops.http import app as http_app
from tests.helpers import http_flows as hf

OPERATOR = "op-" + uuid.uuid4().hex
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def request(
    rt: LocalRuntime, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(rt.server.url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def login(rt: LocalRuntime) -> str:
    code, headers, _ = request(rt, "POST", "/login", f"token={OPERATOR}".encode(), FORM)
    assert code == 303
    return headers["Set-Cookie"].split(";")[0]


def waiting_lazy_run(rt: LocalRuntime) -> str:
    rid = rt.client.submit(hf.lazy_flow, {"x": 7})
    watch = rt.client.store.watch(rid)
    try:
        for _ in range(300):
            task = rt.client.status(rid).tasks.get("wait_approval")
            if task is not None and task.status == "WAITING":
                return rid
            watch.wait(0.2)
    finally:
        watch.close()
    raise AssertionError("the lazy task never waited")


@pytest.fixture
def rt() -> Iterator[LocalRuntime]:
    with LocalRuntime(Config(operator_token=OPERATOR)) as runtime:
        http_app.serve_local(runtime)
        yield runtime


def message(headers: dict[str, str]) -> str:
    return parse_qs(urlsplit(headers["Location"]).query)["msg"][0]


def test_an_operator_approves_or_fails_a_waiting_task_from_its_run_page(rt: LocalRuntime) -> None:
    rid = waiting_lazy_run(rt)
    other = waiting_lazy_run(rt)
    action = f"/runs/{rid}/tasks/wait_approval/complete"
    code, _, page = request(rt, "GET", f"/runs/{rid}")
    assert code == 200 and action.encode() not in page  # not for a visitor
    # refused: not logged in; another site's POST; a result that is not JSON
    body = urlencode({"result": '{"ok": true}'}).encode()
    assert request(rt, "POST", action, body, FORM)[0] == 403
    cookie = login(rt)
    operator = {**FORM, "Cookie": cookie}
    code, _, page = request(rt, "GET", f"/runs/{rid}", headers={"Cookie": cookie})
    assert action.encode() in page and f"/runs/{rid}/tasks/wait_approval/fail".encode() in page
    cross = {**operator, "Origin": "https://evil.example"}
    assert request(rt, "POST", action, body, cross)[0] == 403
    code, headers, _ = request(rt, "POST", action, urlencode({"result": "{nope"}).encode(), operator)
    assert code == 303 and message(headers).startswith("refused: the result is not JSON")
    assert rt.client.status(rid).tasks["wait_approval"].status == "WAITING"  # nothing changed
    code, headers, _ = request(rt, "POST", action, body, operator)
    assert code == 303 and message(headers) == "task wait_approval: completed"
    assert headers["Location"].startswith(f"/runs/{rid}?")
    assert rt.client.wait(rid, timeout_s=60).result == {"approved": {"ok": True}}
    code, headers, _ = request(rt, "POST", action, body, operator)
    assert message(headers).startswith("refused:") and "already completed" in message(headers)
    fail = f"/runs/{other}/tasks/wait_approval/fail"
    code, headers, _ = request(rt, "POST", fail, urlencode({"error": " "}).encode(), operator)
    assert message(headers) == "refused: a failure needs a message"
    code, headers, _ = request(rt, "POST", fail, urlencode({"error": "not approved"}).encode(), operator)
    assert message(headers) == "task wait_approval: failed"
    info = rt.client.wait(other, timeout_s=60)
    assert info.status == "FAILED" and info.tasks["wait_approval"].error["message"] == "not approved"  # type: ignore[index]
    code, headers, _ = request(rt, "POST", "/runs/nope/tasks/t/complete", body, operator)
    assert message(headers) == "refused: no run with id 'nope'"
    assert request(rt, "POST", f"/runs/{rid}/tasks/t/explode", body, operator)[0] == 404
