"""Services the chaos suite owns, so it may kill and restart them: a Redis with AOF
(appendfsync always) and, where this machine allows it, a RabbitMQ node of its own."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests import services as svc
from tests.helpers.net import free_port


def _wait(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while check() is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout_s} s: {check()}")
        time.sleep(0.1)


class OwnRedis:
    """redis-server on a free port, AOF with fsync on every write; SIGKILL and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: svc.redis_ok(self.url), 30, "redis")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill()


class OwnRabbit:
    """A RabbitMQ node of our own (own name, port, data directory), killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.dir = Path("/tmp") / f"ackflow-rmq-{os.getpid()}-{free_port()}"
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"ackflow{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot run a node of our own, or None."""
        if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
            return "rabbitmq-server is not installed"
        if os.geteuid() != 0:
            return "starting a second node needs root here (it runs as the rabbitmq user)"
        try:
            pwd.getpwnam("rabbitmq")
        except KeyError:
            return "no rabbitmq user"
        return None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            }
        )
        return env

    def start(self) -> None:
        if not self.dir.exists():
            (self.dir / "mnesia").mkdir(parents=True)
            (self.dir / "log").mkdir()
            (self.dir / "enabled_plugins").write_text("[].\n")
            (self.dir / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            )
            user = pwd.getpwnam("rabbitmq")
            for p in [self.dir, *self.dir.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)
        self.proc = subprocess.Popen(
            ["rabbitmq-server"],
            env=self._env(),
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: svc.broker_ok(self.url), 90, "rabbitmq node")

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout

    def kill(self) -> None:
        """SIGKILL the Erlang VM (the pid file names it), like a crashed broker host."""
        pid_file = self.dir / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if self.proc is not None:
            self.proc.wait(timeout=60)

    def restart(self) -> None:
        self.kill()
        self.start()

    def settle(self) -> None:
        """Stop cleanly and start again, once, after the topology is declared.

        Seen here on RabbitMQ 3.10.8: a quorum queue declared moments before the node is
        SIGKILLed comes back listed but never confirms a publish again (its Raft member's
        registration had not reached disk). Queues of a real deployment are declared long
        before any crash; a clean restart gives the test the same footing.
        """
        self.ctl("stop")
        if self.proc is not None:
            self.proc.wait(timeout=60)
        self.start()

    def stop(self) -> None:
        try:
            self.ctl("stop")
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
