"""One repetition of a `make cluster` scenario: start 2 engines and 2 workers through the CLI
on a chosen RabbitMQ node, submit a mix of chaos flows, strike once mid-workload (kill -9 of a
RabbitMQ node, of a Redis master, or a live slot migration), wait for every run, bring the
node back, and audit what the runs left behind (tests/helpers/audit.py).

`Rig` owns a 3-node RabbitMQ cluster of our own and a Redis side (tests/cluster/redis_side.py),
with one prefix whose queues are declared and settled before anything is killed."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.broker.base import DEAD_WATCH_QUEUE
from runner.broker.kombu import KombuBroker
from runner.broker.kombu_topology import physical
from runner.client import Client
from runner.config import Config
from runner.errors import WaitTimeout
from runner.store import keys
from tests.chaos import chaos_flows
from tests.chaos.services import OwnRabbitCluster
from tests.cluster.redis_side import RedisSide
from tests.helpers import audit
from tests.helpers.audit import retry
from tests.helpers.processes import Processes

STALL_S = 90.0
"""How long after a strike every run must have finished (a bound, never a measured time);
runs still unfinished then are a stall, reported as such."""
ENGINE_QUEUE = "engine"

# broker scenarios: (where the processes connect, which node is killed), given the engine
# queue's leader and the repetition number
BROKER_SCENARIOS: dict[str, Callable[[int, int], tuple[int, int]]] = {
    "connection node": lambda leader, n: (other(leader, n),) * 2,
    "engine queue leader": lambda leader, n: (other(leader, n), leader),
    "connections + leader": lambda leader, n: (leader, leader),
}
REDIS_SCENARIOS = ("redis master", "slot migration")


def other(leader: int, n: int, nodes: int = 3) -> int:
    """The n-th node that is not the leader (round robin)."""
    return [i for i in range(nodes) if i != leader][n % (nodes - 1)]


def kinds(n: int) -> list[str]:
    """n kinds of the chaos mix in proportion to its weights, every kind once first."""
    cycle = [k for k, w in chaos_flows.WEIGHTS.items() for _ in range(w)]
    first = list(chaos_flows.WEIGHTS)
    return (first + list(itertools.islice(itertools.cycle(cycle), max(0, n - len(first)))))[:n]


class Rig:
    def __init__(self, workdir: Path, delivery_limit: int = 10, redis: str | None = None) -> None:
        self.workdir = workdir
        self.rabbit = OwnRabbitCluster(workdir, nodes=3)
        self.redis = RedisSide(workdir, redis)
        self.cfg: Config | None = None
        self.client: Client | None = None
        self.delivery_limit = delivery_limit
        self.refs = audit.references(chaos_flows.MIX)
        self.reps = 0

    def start(self) -> None:
        self.redis.start()
        self.rabbit.start()
        self.cfg = Config(
            broker_url=self.rabbit.url,
            redis_url=self.redis.url,
            prefix=f"cl-{uuid.uuid4().hex[:8]}",
            heartbeat_s=5,
            # every kill hands back what its connections held, prefetched requests included
            delivery_limit=self.delivery_limit,
        )
        topology = KombuBroker(self.cfg)
        topology.declare(["task.default", DEAD_WATCH_QUEUE])  # everything the processes declare
        topology.close()
        self.rabbit.settle()  # OwnRabbit.settle: the queues' Raft state on disk before a kill
        self.client = Client.from_config(self.cfg)

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - teardown of a cluster being stopped
                pass
        self.rabbit.stop()
        self.redis.stop()

    def queue(self, logical: str) -> str:
        assert self.cfg is not None
        return physical(self.cfg, logical)

    def processes(self, home: int) -> Processes:
        """2 engines and 2 workers connected to node ``home`` (the others as fallbacks)."""
        assert self.cfg is not None
        logdir = self.workdir / f"rep-{self.reps}"
        logdir.mkdir(parents=True, exist_ok=True)
        procs = Processes(self.cfg.with_(broker_url=self.rabbit.url_from(home)), logdir)
        env = {
            "ACKFLOW_BROKER_HOST_ORDER": "listed",
            "ACKFLOW_CHAOS_REDIS": self.redis.records_url,
            "ACKFLOW_CHAOS_TASK_MS": "100",
        }
        for _ in range(2):
            procs.start("engine", env=env, name="engine")
            procs.start("worker", "tests.chaos.chaos_flows", "-c", "4", env=env, name="worker")
        for p in procs.procs:
            procs.until_logged(p, "connected to broker")
        return procs

    def placement(self, procs: Processes) -> dict[str, int]:
        """Each process's connections -> the node they are on."""
        pids = {f":{p.pid}" for p in procs.procs}
        return {
            name: node
            for name, node in self.rabbit.holders("ackflow-").items()
            if name[name.rfind(":") :] in pids
        }

    def submit(self, tag: str, n: int) -> dict[str, tuple[str, int]]:
        assert self.client is not None and self.cfg is not None
        runs = {f"{self.cfg.prefix}-{tag}-{i}": (kind, i) for i, kind in enumerate(kinds(n))}
        client = self.client
        for rid, (kind, i) in runs.items():
            flow, inputs, _, _ = chaos_flows.MIX[kind]
            args = inputs(i)
            retry(lambda f=flow, x=args, r=rid: client.submit(f, x, run_id=r), f"submit {rid}")  # type: ignore[misc]
        return runs

    def wait_all(self, runs: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The final state of every run that finished within ``timeout_s``."""
        assert self.client is not None
        deadline = time.monotonic() + timeout_s
        infos = {}
        for rid in runs:
            left = max(1.0, deadline - time.monotonic())
            try:
                infos[rid] = retry(
                    lambda r=rid, t=left: self.client.wait(r, timeout_s=t), f"wait {rid}", left
                )  # type: ignore[misc, union-attr]
            except (WaitTimeout, AssertionError):
                break
        return infos

    def running_run(self, runs: dict[str, Any]) -> str:
        """A run still going (the first submitted is done: the kill waits for it)."""
        assert self.client is not None
        for rid in list(runs)[1:]:
            if not self.client.status(rid).done:
                return rid
        return list(runs)[-1]

    def rep(self, scenario: str, n_runs: int) -> dict[str, Any]:
        """One repetition of ``scenario``; its figures and checks."""
        assert self.client is not None and self.cfg is not None
        self.reps += 1
        tag = f"r{self.reps}"
        leader = self.rabbit.wait_leader(self.queue(ENGINE_QUEUE))
        if scenario in BROKER_SCENARIOS:
            home, victim = BROKER_SCENARIOS[scenario](leader, self.reps)
        else:
            home, victim = other(leader, self.reps), -1
        procs = self.processes(home)
        rec: dict[str, Any] = {"scenario": scenario, "rep": self.reps, "engine_queue_leader": leader}
        try:
            placed = self.placement(procs)
            rec["placement"] = placed
            if scenario in BROKER_SCENARIOS and set(placed.values()) != {home}:
                raise AssertionError(f"processes not all on node {home}: {placed}")
            runs = self.submit(tag, n_runs)
            first = list(runs)[0]
            retry(lambda: self.client.wait(first, timeout_s=STALL_S), f"wait {first}")  # type: ignore[union-attr]
            rec["in_flight_at_strike"] = sum(not self.client.status(rid).done for rid in runs)
            fault = self.strike(scenario, victim, runs, rec)
            infos = self.wait_all(runs, STALL_S)
            rec["all_done_ms"] = int(time.time() * 1000) - fault["t_ms"] if len(infos) == len(runs) else None
            rec["unfinished_before_restart"] = len(runs) - len(infos)
            if len(infos) < len(runs):
                rec["diagnosis"] = audit.diagnose(self.client, runs, procs.logs())
            self.recover(scenario, victim, fault)
            if len(infos) < len(runs):  # a stall: does the node's return release it?
                infos = self.wait_all(runs, STALL_S)
            rec["unfinished"] = len(runs) - len(infos)
            execs = retry(lambda: self.records().hvals("chaos:executions"), "executions")
            if rec["unfinished"]:
                rec["report"] = None
                rec["lost_runs"] = [rid for rid in runs if rid not in infos]
            else:
                report = audit.audit(self.client, chaos_flows.MIX, self.refs, runs, infos, execs, [fault])
                rec["report"] = {k: v for k, v in report.items() if k != "histories"}
            rec["recovery_ms"] = self.recovery_ms(runs, fault["t_ms"])
            # the nack race of a node kill (README: Running on clusters): how often it was hit
            rec["channel_reopenings"] = sum(
                log.read_text(errors="replace").count("reopening the publishing channel")
                for log in procs.logdir.glob("*.log")
            )
            rec["fault"] = fault
            procs.assert_alive()
        finally:
            procs.stop_all()
        return rec

    def records(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.records_url)

    def strike(self, scenario: str, victim: int, runs: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
        assert self.cfg is not None
        fault: dict[str, Any] = {"t_ms": int(time.time() * 1000)}
        if scenario in BROKER_SCENARIOS:
            fault.update(kind="broker_node_kill", node=self.rabbit.nodes[victim].node)
            self.rabbit.kill(victim)
        else:
            cluster = self.redis.cluster
            assert cluster is not None
            key = keys.run_key(self.cfg.prefix, self.running_run(runs), keys.META)
            if scenario == "redis master":
                port = cluster.master_of(key)
                fault.update(kind="redis_master_kill", port=port)
                cluster.kill(port)
            else:
                fault.update(kind="slot_migration", slot=cluster.slot_of(key))
                fault["from"], fault["to"] = cluster.migrate_slot(key)
                fault["done_ms"] = int(time.time() * 1000)
        return fault

    def recover(self, scenario: str, victim: int, fault: dict[str, Any]) -> None:
        """Bring the struck node back (a kill), into the cluster and synced."""
        if scenario in BROKER_SCENARIOS:
            self.rabbit.restart(victim)
            self.rabbit.wait_leader(self.queue(ENGINE_QUEUE))
            fault["done_ms"] = int(time.time() * 1000)
        elif scenario == "redis master":
            cluster = self.redis.cluster
            assert cluster is not None
            cluster.wait_ok()
            cluster.restart(fault["port"])  # back as a replica of the master that took over
            cluster.wait_ok()
            cluster.wait_replicas()
            fault["done_ms"] = int(time.time() * 1000)

    def recovery_ms(self, runs: dict[str, Any], t_ms: int) -> float | None:
        """From the strike to the next transition applied to any of the runs."""
        assert self.client is not None
        after = [
            int(h.extra["t"])
            for rid in runs
            for h in retry(lambda r=rid: self.client.history(r), "history")  # type: ignore[misc, union-attr]
            if "t" in h.extra and int(h.extra["t"]) > t_ms and h.old != h.new
        ]
        return float(min(after) - t_ms) if after else None


def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's figures over its repetitions."""
    from tests.helpers.checks import pct

    rec_ms = [r["recovery_ms"] for r in recs if r["recovery_ms"] is not None]
    reports = [r["report"] for r in recs if r["report"] is not None]

    def total(key: str) -> int:
        return sum(int(rep[key]) for rep in reports)

    return {
        "reps": len(recs),
        "runs": sum(r["report"]["runs"] if r["report"] else 0 for r in recs)
        + sum(r["unfinished"] for r in recs),
        "nodes_killed": Counter(
            r["fault"].get("node") or r["fault"].get("port")
            for r in recs
            if r["fault"]["kind"].endswith("kill")
        ),
        "unfinished": sum(r["unfinished"] for r in recs),
        "stalled_reps": sum(1 for r in recs if r["unfinished_before_restart"]),
        "lost_transitions": total("lost_transitions"),
        "duplicate_transitions": total("duplicate_transitions"),
        "duplicate_applications": total("duplicate_applications"),
        "unexpected_transitions": total("unexpected_transitions"),
        "wrong_outcomes": total_len(reports, "wrong_outcomes"),
        "unexplained_duplicate_executions": total("unexplained_duplicate_executions"),
        "tasks_never_executed": total("tasks_never_executed"),
        "queues_left": sum(sum(rep["queues_left"].values()) for rep in reports),
        "dead_letters": total("dead_letters"),
        "unsent_outbox_entries": total("unsent_outbox_entries"),
        "recovery_ms": {"p50": pct(rec_ms, 0.5), "p99": pct(rec_ms, 0.99), "max": max(rec_ms, default=0.0)},
        "all_done_ms": [r["all_done_ms"] for r in recs],
    }


def total_len(reports: list[dict[str, Any]], key: str) -> int:
    return sum(len(rep[key]) for rep in reports)


def failures(s: dict[str, Any]) -> list[str]:
    """What a scenario's summary breaks (empty: it passes)."""
    zero = (
        "unfinished",
        "stalled_reps",
        "lost_transitions",
        "duplicate_transitions",
        "duplicate_applications",
        "unexpected_transitions",
        "wrong_outcomes",
        "unexplained_duplicate_executions",
        "tasks_never_executed",
        "queues_left",
        "dead_letters",
        "unsent_outbox_entries",
    )
    return [f"{k}={s[k]}" for k in zero if s[k]]
