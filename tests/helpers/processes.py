"""CLI processes for end-to-end and chaos tests: engines, workers and ``ackflow serve`` started
through ``python -m runner.ops.cli`` on a test's own prefix, killed at teardown (the ``procs``
fixture in tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runner.config import Config
from tests.helpers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
ACKFLOW = [sys.executable, "-m", "runner.ops.cli"]


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
        import urllib.request

        port = free_port()
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

    def until_logged(self, proc: subprocess.Popen[bytes], text: str, timeout_s: float = 60) -> None:
        """Wait until ``proc`` has logged ``text`` (it got that far); fail if it exits first."""
        path = self.logdir / Path(self._files[self.procs.index(proc)].name).name
        deadline = time.monotonic() + timeout_s
        while text not in path.read_text(errors="replace"):
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}\n{self.logs()}"
            assert time.monotonic() < deadline, f"{proc.args} never logged {text!r}\n{self.logs()}"
            time.sleep(0.05)  # a start-up poll of its log file

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
