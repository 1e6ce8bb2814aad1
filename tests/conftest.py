"""Shared fixtures: services (found as DESIGN §9 says), per-test prefixes, CLI processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from runner.config import Config
from tests import services as svc

ROOT = Path(__file__).resolve().parents[1]

# Hypothesis: `make test` tries a bounded number of inputs per property (derandomized under CI, so a
# landing is reproducible); `make fuzz` (HYPOTHESIS_PROFILE=fuzz) tries many more, from fresh seeds.
_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.register_profile(
    "default",
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=_CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
ACKFLOW = [sys.executable, "-m", "runner.cli"]


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "compose" / "docker-compose.yml")


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> svc.Services:
    found, problems = svc.find_without_docker(dict(os.environ))
    if found is not None:
        return found
    if svc.docker_engine_answers():
        ds = request.getfixturevalue("docker_services")  # only now: compose up
        ip = request.getfixturevalue("docker_ip")
        broker = f"amqp://guest:guest@{ip}:{ds.port_for('rabbitmq', 5672)}//"
        red = f"redis://{ip}:{ds.port_for('redis', 6379)}/0"
        ds.wait_until_responsive(
            lambda: svc.broker_ok(broker) is None and svc.redis_ok(red) is None, timeout=120, pause=1
        )
        return svc.Services(broker, red, "docker")
    message = "RabbitMQ/Redis not available: " + "; ".join(problems)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture
def config(services: svc.Services) -> Iterator[Config]:
    """A config with a prefix of its own: no test sees another's queues or keys."""
    cfg = Config(
        broker_url=services.broker_url,
        redis_url=services.redis_url,
        prefix=f"t-{uuid.uuid4().hex[:10]}",
        heartbeat_s=10,
        secret=f"test-secret-{uuid.uuid4().hex}",
    )
    yield cfg
    from runner.connect import open_broker, open_store

    broker = open_broker(cfg)
    try:
        broker.connect()
        broker._declared |= {"task.default", "task.other"}
        broker.delete_queues()
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass
    finally:
        broker.close()
    store = open_store(cfg)
    store.delete_prefix()
    store.close()


def cli_env(cfg: Config, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ACKFLOW_BROKER_URL": cfg.broker_url,
            "ACKFLOW_REDIS_URL": cfg.redis_url,
            "ACKFLOW_PREFIX": cfg.prefix,
            "ACKFLOW_QUEUE_TYPE": cfg.queue_type,
            "ACKFLOW_HEARTBEAT_S": str(cfg.heartbeat_s),
            "ACKFLOW_DELIVERY_LIMIT": str(cfg.delivery_limit),
            "ACKFLOW_SECRET": cfg.secret,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Processes:
    """Engine and worker processes started through the CLI, killed at teardown."""

    def __init__(self, cfg: Config, logdir: Path) -> None:
        self.cfg = cfg
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []
        self.retired: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "") -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name or args[0]}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        self._files.append(log)
        p = subprocess.Popen(
            [*ACKFLOW, *args],
            cwd=ROOT,
            env=cli_env(self.cfg, **(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        return p

    def engine(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("engine", *args, env=env)

    def worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("worker", "tests.e2e.flows", *args, env=env)

    def run(
        self, *args: str, timeout_s: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ACKFLOW, *args],
            cwd=ROOT,
            env=cli_env(self.cfg, **(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def serve(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Start ``ackflow serve`` on a free port; return its base URL once it answers."""
        import json
        import socket
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        proc = self.start("serve", "--port", str(port), *args, env=env)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    assert json.loads(r.read()) == {"ok": True}
                    return base
            except OSError:
                assert time.monotonic() < deadline, self.logs()
                try:  # not listening yet: wait on the process itself, which also catches its death
                    proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    continue
                raise AssertionError(f"ackflow serve exited with {proc.returncode}\n{self.logs()}") from None

    def retire(self, proc: subprocess.Popen[bytes]) -> None:
        """This process was meant to die (a fault point, a kill): stop watching it."""
        self.retired.append(proc)

    def assert_alive(self) -> None:
        dead = [(p.args, p.returncode) for p in self.procs if p not in self.retired and p.poll() is not None]
        assert not dead, f"processes exited: {dead}\n{self.logs()}"

    def wait(self, client: Any, run_id: str, timeout_s: float = 120) -> Any:
        """Wait for a run, failing at once (with the logs) if an engine or worker died."""
        from runner.errors import WaitTimeout

        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_alive()
            try:
                return client.wait(run_id, timeout_s=min(2.0, max(0.1, deadline - time.monotonic())))
            except WaitTimeout:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"run {run_id} unfinished after {timeout_s} s\n{self.logs()}"
                    ) from None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logdir.glob("*.log"))
        )

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait(timeout=30)
        for f in self._files:
            f.close()


@pytest.fixture
def client(config: Config) -> Iterator[Any]:
    """A client on the test's own prefix, against the real services."""
    from runner.connect import open_client

    c = open_client(config)
    yield c
    c.close()


@pytest.fixture
def procs(config: Config, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    p = Processes(config, tmp_path)
    yield p
    p.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        sys.stderr.write(p.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
