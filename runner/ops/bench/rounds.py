"""The rounds: each workload on ackflow and on its peer, alternating which goes first from one
round to the next (ABBA), so that a noisy, shared machine slows both alike; then, once, the
size-independence flows, the idle latency and the physical limits. Returns the raw figures
(`report` turns them into medians, ratios and the table)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from runner.config import Config
from runner.connect import open_store
from runner.engine.durability import judge
from runner.examples.noop import chain
from runner.ops.bench import ackflow_runs as af
from runner.ops.bench import failover, limits, size
from runner.ops.bench.plan import PEERS, Sizes, absent_reason, peer_versions
from runner.ops.bench.procs import Cluster, cleanup, client, fresh

Figures = dict[str, Any]  # steps_per_s, cpu_per_1000 (and latencies)


def _v0(i: int) -> dict[str, int]:
    return {"v0": i}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Recorder:
    """Per workload and side (``ackflow``, ``peer``), the figures of every round."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, list[Figures]]] = {}

    def add(self, workload: str, side: str, figures: Figures) -> None:
        self.runs.setdefault(workload, {}).setdefault(side, []).append(figures)
        say(f"  {workload:<7} {side:<7} {figures['steps_per_s']:>9,.0f} steps/s")


def _ackflow(base: Config, sz: Sizes, rec: Recorder) -> None:
    """1 engine + 1 worker: the chains, then the chords."""
    cfg = fresh(base)
    cluster = Cluster(cfg)
    cli = client(cfg)
    try:
        rec.add("chains", "ackflow", af.batch(cluster, cli, chain(10).compile(), sz.chains, 10, _v0))
        spec = af.chord(sz.chord_width).compile()
        rec.add("chords", "ackflow", af.batch(cluster, cli, spec, sz.chords, sz.chord_width + 1, _v0))
    finally:
        cli.close()
        cluster.close()
        cleanup(cfg)


def _celery(base: Config, sz: Sizes, rec: Recorder) -> None:
    from runner.ops.bench.celery_peer import CeleryPeer

    peer = CeleryPeer(fresh(base))
    try:
        peer.start()
        rec.add("chains", "peer", peer.chains(sz.chains))
        rec.add("chords", "peer", peer.chords(sz.chords, sz.chord_width))
    finally:
        peer.close()


def _scaled(base: Config, sz: Sizes, rec: Recorder, n: int) -> None:
    cfg = fresh(base)
    cluster = Cluster(cfg, n, n)
    cli = client(cfg)
    try:
        rec.add(
            f"scale{n}",
            "ackflow",
            af.batch(cluster, cli, chain(10).compile(), sz.chains, 10, _v0),
        )
    finally:
        cli.close()
        cluster.close()
        cleanup(cfg)


def one_round(
    base: Config, sz: Sizes, rec: Recorder, r: int, peers: dict[str, str | None], scale: bool
) -> None:
    """Round ``r``: ackflow first in even rounds, the peer first in odd ones."""
    distributed: list[Callable[[], None]] = [lambda: _ackflow(base, sz, rec)]
    local: list[Callable[[], None]] = [lambda: rec.add("local", "ackflow", af.local_serial(sz.local_chains))]
    if peers["celery"]:
        distributed.append(lambda: _celery(base, sz, rec))
    if peers["taskflow"]:
        from runner.ops.bench import taskflow_peer

        local.append(lambda: rec.add("local", "peer", taskflow_peer.serial(sz.local_chains)))
    if r % 2:
        distributed.reverse()
        local.reverse()
    for step in (*distributed, *local):
        step()
    # Scale-out: its baseline is this round's 1 + 1 chains; 2 + 2 (and 4 + 4) alternate around it.
    for n in (2, 4) if scale else (2,):
        _scaled(base, sz, rec, n)


# A 10,000-step chain's submit (its spec) is about 1.6 MB, over the default limit of 1 MiB.
LARGE_FLOW_PAYLOAD = 16 * 1024 * 1024


def once(base: Config, sz: Sizes) -> dict[str, Any]:
    """Size independence and idle latency on one 1 + 1 cluster; then the physical limits."""
    out: dict[str, Any] = {}
    cfg = fresh(base).with_(max_payload_bytes=max(base.max_payload_bytes, LARGE_FLOW_PAYLOAD))
    cluster = Cluster(cfg)
    cli = client(cfg)
    try:
        say("idle latency")
        out["idle"] = af.idle_latency(cluster, cli, sz.idle_runs)
        say(f"  p50 {out['idle']['p50_ms']:.1f} ms, p99 {out['idle']['p99_ms']:.1f} ms")
        say("size independence")
        out["size"] = size.size_independence(cluster, cli, sz.flow_sizes)
    finally:
        cli.close()
        cluster.close()
        cleanup(cfg)
    if sz.limits:
        say("physical limits, failover, footprint")
        lim: dict[str, float] = {
            "raw kombu msgs/s, no confirms": limits.raw_kombu(base, sz.raw_msgs, "none"),
            "raw kombu msgs/s, confirm each (R)": limits.raw_kombu(base, sz.raw_msgs // 5, "each"),
            "raw kombu msgs/s, confirms per 100": limits.raw_kombu(base, sz.raw_msgs, "batch"),
            "raw redis Lua CAS round trips/s": limits.raw_redis(base, sz.raw_msgs),
        }
        for role, values in failover.failover(base, sz.failover_kills).items():
            values.sort()
            lim[f"failover after kill -9 {role}: n (of {sz.failover_kills} kills, the victim held work)"] = (
                len(values)
            )
            if values:
                lim[f"failover after kill -9 {role}: p50 ms"] = values[len(values) // 2]
                lim[f"failover after kill -9 {role}: max ms"] = values[-1]
        for k, v in size.footprint(base, sz.footprint_runs).items():
            lim[f"footprint: {k}"] = v
        out["limits"] = lim
    return out


def redis_setting(base: Config) -> str:
    """How the Redis that ackflow and the Celery peer share persists writes: one line."""
    store = open_store(base)
    try:
        verdict = judge(store.durability_settings())
    finally:
        store.close()
    if not verdict.checked:
        return "durability unknown (CONFIG GET refused)"
    got = verdict.settings
    return f"appendonly {got.get('appendonly', '?')}, appendfsync {got.get('appendfsync', '?')}: " + (
        "durable" if verdict.durable else "not durable, so no commit waits for a disk (either system's)"
    )


def run(base: Config, sz: Sizes, peers_wanted: tuple[str, ...], scale: bool = False) -> dict[str, Any]:
    """Every round, then `once`: the raw figures, the peers' versions (or why absent), the
    Redis setting, timings."""
    t0 = time.perf_counter()
    peers = peer_versions(peers_wanted)
    for name, version in peers.items():
        say(f"{PEERS[name]}: {version or absent_reason(name, peers_wanted)}")
    redis = redis_setting(base)
    say(f"Redis: {redis}")
    rec = Recorder()
    for r in range(sz.rounds):
        say(f"round {r + 1}/{sz.rounds} ({'ackflow' if r % 2 == 0 else 'peer'} first)")
        one_round(base, sz, rec, r, peers, scale)
    try:
        rest = once(base, sz)
    except Exception as e:  # noqa: BLE001 - the rounds' figures are still printed, then the error
        rest = {"error": f"{type(e).__name__}: {e}"}
    return {
        "rounds": rec.runs,
        **rest,
        "peers": {n: v or absent_reason(n, peers_wanted) for n, v in peers.items()},
        "peer_installed": {n: v is not None for n, v in peers.items()},
        "redis": redis,
        "seconds": time.perf_counter() - t0,
    }
