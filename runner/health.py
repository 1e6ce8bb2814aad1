"""The port of engines and workers (``--metrics-port``): ``/metrics`` for Prometheus,
``/healthz`` (the process is alive: 200 whenever it answers) and ``/readyz`` (200 only while
each readiness check passes: Redis answers, the broker connection is up and consuming).

Orchestrators probe these: a liveness probe on ``/healthz`` restarts a hung process, a
readiness probe on ``/readyz`` keeps a process out of service while it cannot work. The port
is served from the start, before the process has reached RabbitMQ and Redis, so a process
waiting for them at start (``ACKFLOW_STARTUP_WAIT_S``) is alive and not ready, not dead.

``/readyz`` answers JSON: ``{"ready": true|false, "checks": {"redis": "ok", "broker":
"cannot reach ..."}}`` (passwords scrubbed), 200 or 503. Any other path serves the metrics,
as prometheus_client does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from runner import logs, metrics
from runner.errors import StoreUnavailable

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

# A check returns None when fine, else why not (one line); an exception counts as its reason.
Check = Callable[[], str | None]


class _Pingable(Protocol):
    def ping(self) -> None: ...


class Probes:
    """The readiness checks, added as the process gets to each service (thread-safe)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._starting = "starting"
        self._lock = threading.Lock()

    def starting(self, what: str) -> None:
        """Say what the process is doing before it is ready (``/readyz`` shows it)."""
        self._starting = what

    def add(self, name: str, check: Check) -> None:
        with self._lock:
            self._checks[name] = check

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Run every check: (all passed, each one's "ok" or reason)."""
        with self._lock:
            checks = dict(self._checks)
        if not checks:
            return False, {"process": self._starting}
        out: dict[str, str] = {}
        for name, check in checks.items():
            try:
                why = check()
            except Exception as e:  # noqa: BLE001 - a failing check is a reason, not a crash
                why = f"{type(e).__name__}: {e}"
            out[name] = "ok" if why is None else logs.scrub(why)
        return all(v == "ok" for v in out.values()), out


def store_check(store: _Pingable) -> Check:
    """Redis answers a PING."""

    def check() -> str | None:
        try:
            store.ping()
        except StoreUnavailable as e:
            return str(e)
        return None

    return check


def flag_check(is_set: Callable[[], bool], reason: str) -> Check:
    """``reason`` while ``is_set()`` is false."""
    return lambda: None if is_set() else reason


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Probes come every few seconds: no line for each."""


def app(probes: Probes) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The WSGI app: the two probes, and the metrics on any other path."""
    scrape = make_wsgi_app(metrics.REGISTRY)

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, 200, {"ok": True})
        if path == "/readyz":
            ready, checks = probes.ready()
            return _json(start_response, 200 if ready else 503, {"ready": ready, "checks": checks})
        body: Iterable[bytes] = scrape(environ, start_response)
        return body

    return serve


def _json(start_response: StartResponse, code: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    status = "200 OK" if code == 200 else "503 Service Unavailable"
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]


def serve(port: int, host: str = "0.0.0.0") -> Probes:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (daemon threads);
    the returned `Probes` take the readiness checks."""
    probes = Probes()
    server = make_server(host, port, app(probes), _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="ackflow-health", daemon=True).start()
    return probes
