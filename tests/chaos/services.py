"""Services the chaos suite owns, so it may kill and restart them: a Redis with AOF
(appendfsync always) and, where this machine allows it, a RabbitMQ node of its own."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
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
    """redis-server on a free port, AOF with fsync on every write; SIGKILL and restart it.
    With ``replica_of``, a replica of that one (in a directory of its own)."""

    def __init__(self, workdir: Path, replica_of: OwnRedis | None = None) -> None:
        self.dir = workdir / ("redis" if replica_of is None else "redis-replica")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.replica_of = replica_of

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
                *(["--replicaof", "127.0.0.1", str(self.replica_of.port)] if self.replica_of else []),
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

    def __init__(self, workdir: Path, erl_args: str = "") -> None:
        self.dir = Path("/tmp") / f"ackflow-rmq-{os.getpid()}-{free_port()}"
        self.erl_args = erl_args  # RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS, e.g. "+S 1:1"
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
        if self.erl_args:
            env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = self.erl_args
        return env

    def start(self, wait: bool = True) -> None:
        """Start the node (its files made on the first start); with ``wait``, until it answers."""
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
        if wait:
            self.wait_up()

    def wait_up(self, timeout_s: float = 90) -> None:
        """Until the node answers AMQP on its port."""
        _wait(lambda: svc.broker_ok(self.url), timeout_s, f"rabbitmq node {self.node}")

    def join(self, primary: OwnRabbit) -> None:
        """Make this (fresh, running) node a member of ``primary``'s cluster."""
        for args in (("stop_app",), ("join_cluster", primary.node), ("start_app",)):
            out = subprocess.run(
                ["rabbitmqctl", "-q", "-n", self.node, *args],
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode != 0:
                raise RuntimeError(f"{self.node}: rabbitmqctl {' '.join(args)}: {out.stdout} {out.stderr}")
        self.wait_up()

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


class OwnRabbitCluster:
    """A RabbitMQ cluster of our own: ``nodes`` `OwnRabbit` nodes (own names, ports and data
    directories, no plugins, one scheduler thread each) started in parallel and joined to the
    first; any node can be killed with ``kill -9`` and restarted (it rejoins by itself).

    Declare the topology, then `settle` once before killing anything (`OwnRabbit.settle`)."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        # one scheduler thread per node (3 nodes on 2 cores) and a few async threads
        self.nodes = [OwnRabbit(workdir, erl_args="+S 1:1 +A 2") for _ in range(nodes)]

    @property
    def url(self) -> str:
        """Every node's AMQP URL, ';'-separated (what ACKFLOW_BROKER_URL takes)."""
        return self.url_from(0)

    def url_from(self, first: int) -> str:
        """The URL list starting at node ``first`` (with ``broker_host_order=listed``, a
        process connects there while it is up)."""
        n = len(self.nodes)
        return ";".join(self.nodes[(first + i) % n].url for i in range(n))

    @staticmethod
    def unavailable() -> str | None:
        return OwnRabbit.unavailable()

    def _start_all(self, nodes: list[OwnRabbit]) -> None:
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_up(180)

    def start(self) -> None:
        self._start_all(self.nodes)
        for node in self.nodes[1:]:
            node.join(self.nodes[0])
        self.wait_formed()

    def alive(self, i: int) -> bool:
        proc = self.nodes[i].proc
        return proc is not None and proc.poll() is None

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl ARGS`` on the first live node that answers; its output."""
        errors = []
        for i, node in enumerate(self.nodes):
            if not self.alive(i):
                continue
            out = subprocess.run(
                ["rabbitmqctl", "-q", "-n", node.node, *args],
                env=node._env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if out.returncode == 0:
                return out.stdout
            errors.append(f"{node.node}: {out.stderr.strip()[:300]}")
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed on every live node: {errors}")

    def running(self) -> set[str]:
        """The node names the cluster says are running."""
        status = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        return set(status.get("running_nodes", []))

    def wait_formed(self, timeout_s: float = 180) -> None:
        """Until every live node of ours runs in the cluster."""

        def check() -> str | None:
            want = {n.node for i, n in enumerate(self.nodes) if self.alive(i)}
            try:
                got = self.running()
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                return str(e)
            return None if want <= got else f"running {sorted(got)}, want {sorted(want)}"

        _wait(check, timeout_s, "rabbitmq cluster")

    def index(self, node_name: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.node == node_name)

    def holders(self, marker: str) -> dict[str, int]:
        """Connection name -> the node (index) it is connected to, for every connection whose
        name contains ``marker`` (found by the node's listening port)."""
        by_port = {n.port: i for i, n in enumerate(self.nodes)}
        out = {}
        for line in self.ctl(
            "list_connections", "--no-table-headers", "port", "client_properties"
        ).splitlines():
            port, _, props = line.partition("\t")
            m = re.search(r'\{"connection_name","([^"]*)"\}', props)
            if m and marker in m.group(1) and port.strip().isdigit():
                out[m.group(1)] = by_port.get(int(port), -1)
        return out

    def leader(self, queue: str) -> int | None:
        """The node (index) leading quorum queue ``queue`` now, None if none is known."""
        for line in self.ctl("list_queues", "--no-table-headers", "name", "leader").splitlines():
            name, _, leader = line.partition("\t")
            if name == queue and leader.strip():
                try:
                    return self.index(leader.strip())
                except StopIteration:
                    return None
        return None

    def wait_leader(self, queue: str, timeout_s: float = 60) -> int:
        """Until ``queue`` has a leader on a live node; that node."""

        def check() -> str | None:
            i = self.leader(queue)
            return None if i is not None and self.alive(i) else f"{queue}: leader {i}"

        _wait(check, timeout_s, f"a leader for {queue}")
        leader = self.leader(queue)
        assert leader is not None
        return leader

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``'s Erlang VM."""
        self.nodes[i].kill()

    def restart(self, i: int) -> None:
        """Start node ``i`` again (after `kill`); until it runs in the cluster again."""
        self.nodes[i].kill()
        self._start_all([self.nodes[i]])
        self.wait_formed()

    def settle(self) -> None:
        """Stop every node cleanly and start them again, once, after the topology is declared
        (`OwnRabbit.settle` says why). In parallel: a cluster stopped at once restarts at once."""
        threads = [threading.Thread(target=n.ctl, args=("stop",)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in self.nodes:
            if n.proc is not None:
                n.proc.wait(timeout=60)
        self._start_all(self.nodes)
        self.wait_formed()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
            shutil.rmtree(node.dir, ignore_errors=True)


class OwnRedisCluster:
    """A Redis Cluster of our own: ``masters`` masters with ``replicas`` replicas each, every
    node a redis-server on free ports (client and cluster-bus port both chosen, so nothing
    assumes port + 10000), in its own directory; nodes can be killed and restarted by pid.

    At least two masters matter for tests: a single node owning every slot lets a script touch
    a key it was not given (Redis checks only that declared keys share a slot)."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 0, aof: bool = False) -> None:
        self.dir = workdir / "redis-cluster"
        self.masters, self.replicas, self.aof = masters, replicas, aof
        self.ports = [free_port() for _ in range(masters * (1 + replicas))]
        self.bus = {p: free_port() for p in self.ports}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The ackflow URL naming every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node_url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    @staticmethod
    def unavailable() -> str | None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            return "redis-server / redis-cli are not installed"
        return None

    def _spawn(self, port: int) -> None:
        d = self.dir / str(port)
        d.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus[port]),
            "--cluster-config-file", str(d / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            # a replica fails over however long its link was down (a test kills on purpose)
            "--cluster-replica-validity-factor", "0",
            "--dir", str(d),
            "--save", "",
            "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(d / "redis.log"),
        ]  # fmt: skip
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: svc.redis_ok(self.node_url(port)), 30, f"redis cluster node {port}")

    def start(self) -> None:
        for port in self.ports:
            self._spawn(port)
        out = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {out.stdout[-2000:]} {out.stderr[-2000:]}"
            )
        self.wait_ok()
        self.wait_replicas()

    def wait_replicas(self, timeout_s: float = 60) -> None:
        """Until every live replica has synced with its master (a replica that never synced
        holds nothing to take over with)."""

        def check() -> str | None:
            for n in self.nodes():
                port = int(n["port"])
                if n["role"] == "slave" and self.procs[port].poll() is None:
                    if "master_link_status:up" not in self.cli(port, "info", "replication"):
                        return f"replica {port} not synced"
            return None

        _wait(check, timeout_s, "redis cluster replicas")

    def cli(self, port: int, *args: str, timeout_s: float = 30) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=timeout_s
        )
        return out.stdout

    def _ok(self, port: int) -> str | None:
        if port not in self.procs or self.procs[port].poll() is not None:
            return None  # a dead node is not asked
        try:
            info = self.cli(port, "cluster", "info", timeout_s=5)
        except subprocess.TimeoutExpired:
            return f"{port}: no answer"
        if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
            return f"{port}: {info.strip()[:200]}"
        return None

    def wait_ok(self, timeout_s: float = 60) -> None:
        """Until every live node says the cluster is ok with all 16384 slots served, and by
        live masters only (after a kill, the others say ok until they mark the node failed)."""

        def check() -> str | None:
            for port in self.ports:
                if (err := self._ok(port)) is not None:
                    return err
            for n in self.nodes():
                port = int(n["port"])
                if n["role"] == "master" and n["slots"] and self.procs[port].poll() is not None:
                    return f"dead master {port} still serves slots"
            return None

        _wait(check, timeout_s, "redis cluster")

    def nodes(self) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by a live node: id, port, role ('master'/'slave'), master id, slots."""
        for port in self.ports:
            if self.procs.get(port) is not None and self.procs[port].poll() is None:
                text = self.cli(port, "cluster", "nodes")
                break
        else:
            raise RuntimeError("no live redis cluster node")
        out = []
        for line in text.strip().splitlines():
            f = line.split()
            addr = f[1].split("@")[0]
            out.append(
                {
                    "id": f[0],
                    "port": addr.rsplit(":", 1)[1],
                    "role": "master" if "master" in f[2] else "slave",
                    "failed": "fail" in f[2] and "fail?" not in f[2],
                    "master": f[3],
                    "slots": " ".join(f[8:]),
                }
            )
        return out  # type: ignore[return-value]

    def slot_of(self, key: str) -> int:
        live = next(p for p in self.ports if self.procs[p].poll() is None)
        return int(self.cli(live, "cluster", "keyslot", key).strip())

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        slot = self.slot_of(key)
        for n in self.nodes():
            if n["role"] != "master" or n["failed"]:
                continue
            for r in n["slots"].split():
                if r.startswith("["):
                    continue  # a slot being migrated or imported
                lo, _, hi = r.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return int(n["port"])
        raise RuntimeError(f"no master serves slot {slot}")

    def node_id(self, port: int) -> str:
        return self.cli(port, "cluster", "myid").strip()

    def begin_migration(self, slot: int, to_port: int, keys: int = 0) -> int:
        """Start a live migration of ``slot`` from its master to the master at ``to_port``
        (IMPORTING/MIGRATING, as ``redis-cli --cluster reshard`` does) and move ``keys`` of its
        keys (-1: all). Returns the port it comes from."""
        src = next(int(n["port"]) for n in self.nodes() if n["role"] == "master" and self._serves(n, slot))
        self.cli(to_port, "cluster", "setslot", str(slot), "importing", self.node_id(src))
        self.cli(src, "cluster", "setslot", str(slot), "migrating", self.node_id(to_port))
        self._move_keys(src, to_port, slot, keys)
        return src

    def finish_migration(self, slot: int, src: int, to_port: int) -> None:
        """Move the slot's remaining keys and give the slot to ``to_port`` on every master."""
        self._move_keys(src, to_port, slot, -1)
        dst_id = self.node_id(to_port)
        for port in (to_port, src):
            self.cli(port, "cluster", "setslot", str(slot), "node", dst_id)
        for n in self.nodes():
            port = int(n["port"])
            if n["role"] == "master" and port not in (to_port, src) and self.procs[port].poll() is None:
                self.cli(port, "cluster", "setslot", str(slot), "node", dst_id)
        self.wait_ok()

    def _move_keys(self, src: int, dst: int, slot: int, count: int) -> None:
        names = self.cli(src, "cluster", "getkeysinslot", str(slot), "1000").split()
        names = names if count < 0 else names[:count]
        if names:
            out = self.cli(src, "migrate", "127.0.0.1", str(dst), "", "0", "5000", "keys", *names)
            if "OK" not in out:
                raise RuntimeError(f"MIGRATE of slot {slot} failed: {out.strip()}")

    @staticmethod
    def _serves(node: dict[str, str], slot: int) -> bool:
        for r in node["slots"].split():
            if r.startswith("["):
                continue
            lo, _, hi = r.partition("-")
            if int(lo) <= slot <= int(hi or lo):
                return True
        return False

    def migrate_slot(self, key: str, to_port: int | None = None) -> tuple[int, int]:
        """Move ``key``'s slot, with its keys, to another master (``to_port``, or the next live
        one) while clients use it, as ``redis-cli --cluster reshard`` does slot by slot:
        IMPORTING / MIGRATING, MIGRATE of its keys in batches (clients meanwhile get ASK and
        TRYAGAIN), then SETSLOT NODE on every master. Returns (from port, to port)."""
        slot, src = self.slot_of(key), self.master_of(key)
        masters = {int(n["port"]): n["id"] for n in self.nodes() if n["role"] == "master" and not n["failed"]}
        live = [p for p in masters if p != src and self.procs[p].poll() is None]
        dst = to_port if to_port is not None else live[0]

        def ok(port: int, *args: str) -> str:
            out = self.cli(port, *args).strip()
            if out.startswith(("ERR", "IOERR", "(error)")):
                raise RuntimeError(f"redis {port} {' '.join(args)}: {out}")
            return out

        ok(dst, "cluster", "setslot", str(slot), "importing", masters[src])
        ok(src, "cluster", "setslot", str(slot), "migrating", masters[dst])
        while keys := ok(src, "cluster", "getkeysinslot", str(slot), "100").split():
            ok(src, "migrate", "127.0.0.1", str(dst), "", "0", "5000", "keys", *keys)
        for port in (dst, src, *(p for p in masters if p not in (src, dst))):
            ok(port, "cluster", "setslot", str(slot), "node", masters[dst])
        return src, dst

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def restart(self, port: int) -> None:
        self.kill(port)
        self._spawn(port)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
