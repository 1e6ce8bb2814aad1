"""CLI processes for end-to-end and chaos tests: engines, workers and ``ackflow serve`` started
through ``python -m runner.ops.cli`` on a test's own prefix, killed at teardown (the ``procs``
fixture in tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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


class Output:
    """A process's output, copied line by line to its log file by a thread of its own; whoever
    waits for a line (`wait_for`) is woken by each new one, and by the end of the output."""

    def __init__(self, stream: IO[bytes], path: Path) -> None:
        self.path = path
        self._text: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        log = open(path, "wb")  # noqa: SIM115 - created now, so readers find it; the thread closes it
        self._thread = threading.Thread(target=self._pump, args=(stream, log), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes], log: IO[bytes]) -> None:
        with stream, log:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()
                with self._changed:
                    self._text.append(line.decode(errors="replace"))
                    self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        """True once a line holding ``text`` was written; False if the output ended first or
        ``timeout_s`` ran out."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._changed:
            while True:
                if any(text in line for line in self._text[seen:]):
                    return True
                seen = len(self._text)
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    return False
                self._changed.wait(left)

    def join(self, timeout_s: float) -> None:
        """Wait until all of the output (its process has ended) is in the log file."""
        self._thread.join(timeout_s)


class Processes:
    """Engine and worker processes started through the CLI, killed at teardown."""

    def __init__(self, cfg: Config, logdir: Path) -> None:
        self.cfg = cfg
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._outputs: list[Output] = []
        self.retired: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "") -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [*ACKFLOW, *args],
            cwd=ROOT,
            env=cli_env(self.cfg, **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert p.stdout is not None
        self._outputs.append(Output(p.stdout, self.logdir / f"{name or args[0]}-{len(self.procs)}.log"))
        self.procs.append(p)
        return p

    def engine(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("engine", *args, env=env)

    def worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start("worker", "tests.helpers.flows", *args, env=env)

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

    def until_answers(
        self, proc: subprocess.Popen[bytes], url: str, status: int, timeout_s: float = 60
    ) -> Any:
        """Wait until ``url`` answers ``status``; return its JSON body. Between tries it waits
        on ``proc`` itself, so a process that dies fails the wait at once (with the logs)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                code, body = http_json(url)
            except OSError:
                code, body = 0, None  # not listening yet
            if code == status:
                return body
            assert time.monotonic() < deadline, f"{url} answers {code} {body}, not {status}\n{self.logs()}"
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"{proc.args} exited with {proc.returncode}\n{self.logs()}")

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
        if not self._outputs[self.procs.index(proc)].wait_for(text, timeout_s):
            state = f"exited with {proc.returncode}" if proc.poll() is not None else f"never logged {text!r}"
            raise AssertionError(f"{proc.args} {state}\n{self.logs()}")

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
        for out in self._outputs:
            out.join(30)


def http_json(url: str) -> tuple[int, Any]:
    """GET ``url``: its status and JSON body, whatever the status."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def until_run(
    client: Any,
    run_id: str,
    check: Callable[[], bool],
    what: str,
    procs: Processes | None = None,
    timeout_s: float = 30,
) -> None:
    """Wait, on the run's change notices (never a sleep), until ``check()`` holds; fail at once,
    with the logs, if one of ``procs`` died."""
    deadline = time.monotonic() + timeout_s
    watch = client.store.watch(run_id)
    try:
        while not check():
            if procs is not None:
                procs.assert_alive()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}\n{procs.logs() if procs else ''}")
            watch.wait(min(left, 0.5))
    finally:
        watch.close()
