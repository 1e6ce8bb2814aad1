"""Every exit code the README documents, for a representative command (no service needed).

Where the outcome needs no RabbitMQ or Redis, the command runs for real (local mode, bad
arguments, an address nobody listens on, a tiny HTTP server on 127.0.0.1). Where it needs a
run in a state that takes services to build (timed out, unknown, already completed, lost),
the client the command builds is replaced by one that raises what the real client raises
then: what is under test is the command's translation into the documented exit code.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner

from runner.client import Client
from runner.errors import AlreadyCompleted, RunLost, RunNotFound, WaitTimeout
from runner.ops import cli
from runner.ops.cli import common
from runner.store.keys import InvalidRunId

NOWHERE = {
    "ACKFLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
    "ACKFLOW_REDIS_URL": "redis://127.0.0.1:1/0",
    "ACKFLOW_SECRET": "",
}
WITH_SECRET = dict(NOWHERE, ACKFLOW_SECRET="s" * 32)
TOKEN = "af1.cnVu.dGFzaw.c2lnbmF0dXJl"
main = cli.load_plugins()


class FakeClient:
    """Raises ``error`` from whichever client method the command calls."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def close(self) -> None:
        pass

    def submit(self, *args: Any, **kwargs: Any) -> str:
        return "run-1"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


@dataclass
class Row:
    args: list[str]
    code: int
    says: str  # in the output: the message says what went wrong
    env: dict[str, str] = field(default_factory=lambda: dict(NOWHERE))
    raises: Exception | None = None  # the client raises this (needs services to happen for real)


ROWS = {
    "0 success": Row(["run", "tests.helpers.flows:chain10", "-q", "-i", "v0=1"], 0, "SUCCESS"),
    "1 run failed": Row(["run", "tests.helpers.flows:failing_flow", "-q", "-i", "x=1"], 1, "boom 2"),
    "2 invalid flow": Row(["run", "tests.helpers.flows:nope"], 2, "has no attribute 'nope'"),
    "2 input too big to encode": Row(
        ["run", "tests.helpers.flows:chain10", "-q", "-i", f"v0={2**64 + 1}"], 2, "cannot encode"
    ),
    "2 empty run id": Row(
        ["submit", "tests.helpers.flows:chain10", "-i", "v0=1", "--run-id", ""], 2, "run id ''"
    ),
    "2 bad run id": Row(
        ["run", "tests.helpers.flows:chain10", "-i", "v0=1", "--run-id", "a b"], 2, "run id 'a b'"
    ),
    "2 invalid run id from the client": Row(["status", "x"], 2, "must be 1-128", raises=InvalidRunId("a b")),
    "2 complete without ACKFLOW_SECRET": Row(
        ["complete", TOKEN, "--result", "1"], 2, "ACKFLOW_SECRET is not set"
    ),
    "2 fail without ACKFLOW_SECRET": Row(["fail", TOKEN, "--error", "no"], 2, "ACKFLOW_SECRET is not set"),
    "3 services unavailable": Row(["status", "some-run"], 3, "error:"),
    "4 wait timed out": Row(
        ["submit", "tests.helpers.flows:chain10", "-i", "v0=1", "--wait", "--timeout", "1"],
        4,
        "still RUNNING",
        raises=WaitTimeout("run-1", 1, "RUNNING"),
    ),
    "5 no such run": Row(["status", "run-9"], 5, "no run with id 'run-9'", raises=RunNotFound("run-9")),
    "6 already completed": Row(
        ["complete", TOKEN, "--result", "1"],
        6,
        "already completed",
        env=WITH_SECRET,
        raises=AlreadyCompleted("run-1", "approve", "SUCCESS"),
    ),
    "7 run lost": Row(["status", "run-1"], 7, "was lost", raises=RunLost("run-1")),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=list(ROWS))
def test_documented_exit_code(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    if row.raises is not None:
        error = row.raises
        monkeypatch.setattr(Client, "from_env", classmethod(lambda cls, **kw: FakeClient(error)))
    result = CliRunner().invoke(main, ["--log-level", "warning", *row.args], env=row.env)
    assert result.exit_code == row.code, result.output
    assert row.says in result.output
    assert "Traceback" not in result.output


def test_the_table_covers_every_documented_code() -> None:
    documented = {0, *range(common.EXIT_FAILED, common.EXIT_LOST + 1)}
    assert {row.code for row in ROWS.values()} == documented


# --- completing through --url: whatever the address answers, a clear message and code ----------


@pytest.fixture
def answering() -> Iterator[Callable[[int, bytes], str]]:
    """A local HTTP server answering every POST with the status and body a test sets."""
    reply: dict[str, Any] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(reply["status"])
            self.send_header("Content-Length", str(len(reply["body"])))
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def set_reply(status: int, body: bytes) -> str:
        reply.update(status=status, body=body)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield set_reply
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    "status,body,code,says",
    [
        (200, b'{"status": "completed"}', 0, "completed"),
        (200, b"<html>a proxy page</html>", 1, "not an ackflow JSON reply"),
        (200, b"[1, 2]", 1, "not an ackflow JSON reply"),
        (200, b"\xff\xfe", 1, "not an ackflow JSON reply"),
        (502, b"<html>Bad Gateway</html>", 3, "HTTP 502"),
        (404, b"Not Found", 5, "HTTP 404"),
        (400, b"oops", 1, "HTTP 400"),
        (403, b'{"error": "invalid token"}', 2, "invalid token"),
        (409, b'{"status": "already completed", "error": "done"}', 6, "already completed"),
    ],
)
def test_complete_through_url_explains_any_reply(
    answering: Callable[[int, bytes], str], status: int, body: bytes, code: int, says: str
) -> None:
    url = answering(status, body)
    result = CliRunner().invoke(main, ["complete", TOKEN, "--result", "1", "--url", url], env=NOWHERE)
    assert result.exit_code == code, result.output
    assert says in result.output
    assert "Traceback" not in result.output
