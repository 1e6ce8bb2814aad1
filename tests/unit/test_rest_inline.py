"""``POST /v1/runs`` with an inline flow definition (issue 17, item 4), served in-process over
local mode with real HTTP requests: the definition is compiled by the server against the task
catalogue (the tasks of tests/helpers/http_flows.py, recorded as a worker records them), runs,
is idempotent by run id (409 on a different definition or inputs), and every bad document or
input gets a clear 400 in the one error shape; every answer is checked against the served
OpenAPI document."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from runner.client import catalogue, flows
from runner.config import Config
from runner.define.tasks import REGISTRY
from runner.local import LocalRuntime
from runner.ops.http import app as http_app
from tests.helpers import http_flows as hf
from tests.helpers.openapi_check import check_response

TOKEN = "inline-" + uuid.uuid4().hex
DOUBLE = {
    "flow": "inline_double",
    "items": [{"task": "double"}, {"task": "echo", "rebind": {"x": "doubled"}}],
}
DOUBLE_YAML = "flow: inline_double\nitems:\n  - task: double\n  - task: echo\n    rebind: {x: doubled}\n"


@pytest.fixture
def rt() -> Iterator[LocalRuntime]:
    with LocalRuntime(Config(api_token=TOKEN)) as runtime:
        http_app.serve_local(runtime)
        assert hf.double.name in REGISTRY
        catalogue.record(runtime.client.store, REGISTRY, by="test")
        yield runtime


def call(rt: LocalRuntime, body: Any = None, raw: bytes | None = None, path: str = "/v1/runs") -> Any:
    """One request with the token; (status, headers, answer) once the answer fits the document."""
    assert rt.server is not None
    url = urlsplit(rt.server.url)
    assert url.hostname and url.port
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    data = raw if raw is not None else json.dumps(body).encode()
    method = "GET" if body is None and raw is None else "POST"
    try:
        conn.request(method, path, data if method == "POST" else None, {"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        status, headers, answer = (
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            json.loads(resp.read()),
        )
        conn.request("GET", "/v1/openapi.json")
        doc = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    errors = check_response(doc, method, path, status, headers, answer)
    assert not errors, errors
    if status >= 400:
        assert set(answer) == {"error"} and set(answer["error"]) == {"type", "message"}
    return status, headers, answer


def test_an_inline_definition_runs_and_its_run_keeps_the_compiled_spec(rt: LocalRuntime) -> None:
    code, headers, answer = call(rt, {"definition": DOUBLE, "inputs": {"n": 21}, "run_id": "inline-1"})
    assert code == 201 and headers["location"] == "/v1/runs/inline-1" == answer["url"], answer
    assert answer["run_id"] == "inline-1" and answer["flow"] == "inline_double"
    info = rt.client.wait("inline-1", timeout_s=60)
    assert info.status == "SUCCESS" and info.result == {"y": 42}
    spec = rt.client.specs("inline-1")
    assert spec["echo"].args == {"x": "doubled"} and spec["echo"].preds == ["double"]
    code, _, run = call(rt, path="/v1/runs/inline-1")
    assert code == 200 and run["flow"] == "inline_double" and run["status"] == "SUCCESS"
    # the same flow as YAML text: the same compiled spec, the same version
    code, _, again = call(rt, {"definition": DOUBLE_YAML, "inputs": {"n": 1}})
    assert code == 201 and again["version"] == answer["version"]
    assert rt.client.wait(again["run_id"], timeout_s=60).result == {"y": 2}
    assert flows.list_flows(rt.client.store) == []  # an inline definition registers no flow


def test_submitting_an_inline_definition_is_idempotent_by_run_id(rt: LocalRuntime) -> None:
    body = {"definition": DOUBLE, "inputs": {"n": 2}, "run_id": "inline-twice"}
    first = call(rt, body)
    assert first[0] == 201
    assert call(rt, body)[:2] == first[:2]  # the same again: the same run, 201 and Location
    assert call(rt, {**body, "definition": DOUBLE_YAML})[0] == 201  # the same spec, written as YAML
    for changed in (
        {**body, "inputs": {"n": 3}},
        {**body, "definition": {**DOUBLE, "items": [{"task": "double"}]}},
    ):
        code, _, answer = call(rt, changed)
        assert code == 409 and answer["error"]["type"] == "run_conflict", answer
    assert rt.client.wait("inline-twice", timeout_s=60).result == {"y": 4}


# A few hundred bytes of YAML aliases of aliases: 10^6 references once walked (a "billion laughs")
LAUGHS = "a0: &a0 [y, y, y, y, y, y, y, y, y, y]\n" + "".join(
    f"a{i + 1}: &a{i + 1} [{', '.join([f'*a{i}'] * 10)}]\n" for i in range(6)
)
DEEP = "{task: echo}"
for _i in range(300):
    DEEP = f"{{flow: {{name: f{_i}, items: [{DEEP}]}}}}"

BAD: list[tuple[dict[str, Any], str, str]] = [
    (
        {"definition": LAUGHS + "flow: f\nitems: [{task: echo}]\n"},
        "invalid_flow",
        "definition:2: YAML aliases",
    ),
    ({"definition": f"flow: f\nitems: [{DEEP}]\n"}, "invalid_flow", "definition: nested too deeply"),
    (
        {"definition": {"flow": "f", "items": [{"task": "duble"}]}},
        "invalid_flow",
        "definition: items[0].task: unknown task 'duble' (did you mean 'double'?)",
    ),
    (
        {"definition": {"flow": "f", "items": [{"task": "double", "retyr": 2}]}},
        "invalid_flow",
        "items[0].retyr: unknown key 'retyr'; did you mean 'retry'?",
    ),
    (
        {"definition": "flow: f\nitems:\n  - task: double\n    timeout: -1\n"},
        "invalid_flow",
        "definition:3: items[0]: timeout must be a number of seconds >= 0",
    ),
    ({"definition": "flow: [f\n"}, "invalid_flow", "not valid YAML or JSON"),
    ({"definition": {"items": [{"task": "double"}]}}, "invalid_flow", "the flow's name is missing"),
    ({"definition": DOUBLE, "inputs": {}}, "missing_input", "'n'"),
    ({"definition": DOUBLE, "inputs": {"n": 1, "m": 2}}, "unknown_input", "'m'"),
    ({"definition": DOUBLE, "inputs": {"n": "two"}}, "input_type", "'n'"),
    ({"definition": DOUBLE, "flow": "inline_double"}, "bad_request", "not both"),
    ({"definition": [1]}, "bad_request", '"definition" must be a flow document'),
    ({"definition": {}}, "bad_request", '"definition" must be a flow document'),
    ({"definition": DOUBLE, "inputs": {"n": 1}, "version": "abc"}, "bad_request", '"version"'),
    ({"definition": DOUBLE, "inputs": {"n": 1}, "run_id": "a b"}, "bad_request", "a b"),
]


@pytest.mark.parametrize(("body", "kind", "words"), BAD)
def test_a_bad_definition_or_input_is_a_400_that_says_what_is_wrong(
    rt: LocalRuntime, body: dict[str, Any], kind: str, words: str
) -> None:
    code, _, answer = call(rt, body)
    assert code == 400 and answer["error"]["type"] == kind, answer
    assert words in answer["error"]["message"], answer
    assert rt.client.page()[0] == []  # nothing was submitted


def test_a_definition_over_the_payload_limit_is_a_413(rt: LocalRuntime) -> None:
    limit = rt.config.max_payload_bytes
    items = [{"task": "echo", "name": f"e{i}", "rebind": {"x": "v" * 100}} for i in range(limit // 100)]
    code, _, answer = call(rt, {"definition": {"flow": "big", "items": items}})
    assert code == 413 and answer["error"]["type"] == "payload_too_large"
    # under the body limit, the compiled spec over the submit message's
    many = [{"task": "echo", "name": f"e{i}", "provides": f"y{i}"} for i in range(limit // 60)]
    body = json.dumps(
        {"definition": {"flow": "wide", "type": "unordered", "items": many}, "inputs": {"x": 1}}
    )
    assert len(body) < limit
    code, _, answer = call(rt, raw=body.encode())
    assert code == 413 and "submit message" in answer["error"]["message"], answer
    assert rt.client.page()[0] == []
