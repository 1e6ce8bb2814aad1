"""The port engines and workers serve (`runner.health`), by real HTTP requests: /healthz
answers while the process lives, /readyz only while every check passes (and says which one
fails, passwords hidden), /metrics still serves Prometheus text."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from runner import health
from runner.errors import StoreUnavailable
from tests.helpers.net import free_port


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    return code, body if path == "/metrics" else json.loads(body)


class FakeStore:
    def __init__(self) -> None:
        self.down = False

    def ping(self) -> None:
        if self.down:
            raise StoreUnavailable("cannot reach redis at redis://:***@127.0.0.1:1/0: refused")


def test_alive_at_once_ready_only_with_every_check_passing() -> None:
    port = free_port()
    probes = health.serve(port, "127.0.0.1")
    assert get(port, "/healthz") == (200, {"ok": True})
    assert get(port, "/readyz") == (503, {"ready": False, "checks": {"process": "starting"}})
    probes.starting("waiting for redis")
    assert get(port, "/readyz") == (503, {"ready": False, "checks": {"process": "waiting for redis"}})

    store, consuming = FakeStore(), [False]
    probes.add("redis", health.store_check(store))
    probes.add("broker", health.flag_check(lambda: consuming[0], "not consuming"))
    assert get(port, "/readyz") == (
        503,
        {"ready": False, "checks": {"redis": "ok", "broker": "not consuming"}},
    )
    consuming[0] = True
    assert get(port, "/readyz") == (200, {"ready": True, "checks": {"redis": "ok", "broker": "ok"}})
    store.down = True
    code, body = get(port, "/readyz")
    assert code == 503 and body["checks"]["broker"] == "ok"
    assert body["checks"]["redis"].startswith("cannot reach redis at redis://:***@127.0.0.1:1/0")
    assert get(port, "/healthz") == (200, {"ok": True})  # not ready is still alive
    store.down = False
    assert get(port, "/readyz")[0] == 200


def test_a_check_that_raises_gives_its_reason_with_passwords_hidden() -> None:
    port = free_port()
    probes = health.serve(port, "127.0.0.1")

    def broken() -> str | None:
        raise RuntimeError("lost amqp://user:s3cret@rabbit:5672//")

    probes.add("broker", broken)
    code, body = get(port, "/readyz")
    assert code == 503
    assert body["checks"]["broker"] == "RuntimeError: lost amqp://user:***@rabbit:5672//"


def test_the_metrics_are_served_beside_the_probes() -> None:
    port = free_port()
    health.serve(port, "127.0.0.1")
    code, text = get(port, "/metrics")
    assert code == 200 and b"# TYPE ackflow_events_total counter" in text
