"""`make cluster`: the scale-out soak of issue 14 on this machine.

A 3-node RabbitMQ cluster of our own (quorum queues) and a Redis of our own (a Redis Cluster,
3 masters + 3 replicas, once the store takes ``redis+cluster://``; tests/cluster/redis_side.py);
2 engines and 2 workers started by the CLI for each repetition, a mix of chaos flows, and one
strike mid-workload per repetition:

- ``connection node``: kill -9 of the node holding every process's connections (not the
  engine queue's leader);
- ``engine queue leader``: kill -9 of the engine queue's leader (the connections elsewhere);
- ``connections + leader``: kill -9 of the node that holds the connections *and* leads the
  engine queue (the stall of the scale-out findings, §3 case C);
- ``redis master`` / ``slot migration`` (Redis Cluster only): kill -9 of the master serving
  a running run's slot (its replica takes over), a live migration of that slot.

The killed node comes back before the next repetition. Every repetition is audited as the
chaos suite audits (0 lost, 0 duplicate transitions, expected outcomes, queues drained, no
dead letters, no unsent outbox entry) and must finish within a bound after the strike.
Prints a table per scenario, writes cluster-report.json, exits 1 if a scenario fails.

    ACKFLOW_CLUSTER_REPS (3)   repetitions per scenario
    ACKFLOW_CLUSTER_RUNS (40)  runs per repetition
    ACKFLOW_CLUSTER_REDIS      auto (default) | single | cluster
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos.services import OwnRabbitCluster
from tests.cluster.rig import BROKER_SCENARIOS, REDIS_SCENARIOS, Rig, failures, summary
from tests.helpers.processes import ROOT

REPS = int(os.environ.get("ACKFLOW_CLUSTER_REPS", "3"))
RUNS = int(os.environ.get("ACKFLOW_CLUSTER_RUNS", "40"))
RECOVERY_BOUND_MS = 30_000
"""From a strike to the next transition, generously (an election, a reconnect, a Redis
failover take seconds at most here)."""


def run(workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    rig = Rig(workdir)
    print(f"cluster: Redis side: {rig.redis.describe()}", flush=True)
    try:
        rig.start()
        setup_s = time.monotonic() - started
        print(f"cluster: 3 RabbitMQ nodes formed and settled, Redis up in {setup_s:.0f} s", flush=True)
        scenarios: dict[str, Any] = {}
        for name in [*BROKER_SCENARIOS, *REDIS_SCENARIOS]:
            if name in REDIS_SCENARIOS and rig.redis.cluster is None:
                scenarios[name] = {"skipped": rig.redis.no_cluster}
                print(f"cluster: {name}: SKIPPED ({rig.redis.no_cluster})", flush=True)
                continue
            recs = []
            for _ in range(REPS):
                rec = rig.rep(name, RUNS)
                recs.append(rec)
                print(f"cluster: {name} #{rec['rep']}: {line(rec)}", flush=True)
            s = summary(recs)
            s["failures"] = failures(s) + (
                [f"recovery max {s['recovery_ms']['max']:.0f} ms > {RECOVERY_BOUND_MS}"]
                if s["recovery_ms"]["max"] > RECOVERY_BOUND_MS or any(r["recovery_ms"] is None for r in recs)
                else []
            )
            scenarios[name] = {**s, "repetitions": recs}
    finally:
        rig.stop()
    return {
        "elapsed_s": round(time.monotonic() - started, 1),
        "setup_s": round(setup_s, 1),
        "reps": REPS,
        "runs_per_rep": RUNS,
        "redis": rig.redis.describe(),
        "recovery_bound_ms": RECOVERY_BOUND_MS,
        "scenarios": scenarios,
    }


def line(rec: dict[str, Any]) -> str:
    f = rec["fault"]
    where = f.get("node") or f.get("port") or f"slot {f.get('slot')} {f.get('from')}->{f.get('to')}"
    rep = rec["report"] or {}
    return (
        f"{f['kind']} {where} with {rec['in_flight_at_strike']} runs in flight; recovery {rec['recovery_ms']} ms; all done {rec['all_done_ms']} ms after;"
        f" publishing channels reopened {rec['channel_reopenings']};"
        f" unfinished {rec['unfinished']} (before the node's return {rec['unfinished_before_restart']});"
        f" lost {rep.get('lost_transitions')} dup {rep.get('duplicate_transitions')}"
        f" dead {rep.get('dead_letters')} queues left {rep.get('queues_left')}"
    )


def table(report: dict[str, Any]) -> str:
    head = (
        "scenario",
        "reps",
        "runs",
        "nodes killed",
        "unfinished",
        "lost",
        "dup trans",
        "recovery ms p50/p99/max",
        "result",
    )
    rows = [head]
    for name, s in report["scenarios"].items():
        if "skipped" in s:
            rows.append((name, "-", "-", "-", "-", "-", "-", "-", f"SKIPPED: {s['skipped']}"))
            continue
        r = s["recovery_ms"]
        rows.append(
            (
                name,
                str(s["reps"]),
                str(s["runs"]),
                str(sum(s["nodes_killed"].values())),
                str(s["unfinished"]),
                str(s["lost_transitions"]),
                str(s["duplicate_transitions"]),
                f"{r['p50']:.0f} / {r['p99']:.0f} / {r['max']:.0f}",
                "ok" if not s["failures"] else "FAIL " + ", ".join(s["failures"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    out = [
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + " | " + row[-1] for row in rows
    ]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def main() -> int:
    why = OwnRabbitCluster.unavailable()
    if why:
        print(f"make cluster: cannot start RabbitMQ nodes of our own: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ackflow-cluster-") as tmp:
        report = run(Path(tmp))
    (ROOT / "cluster-report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    print(
        f"\n{table(report)}\n\nmake cluster: {report['elapsed_s']} s (setup {report['setup_s']} s);"
        " cluster-report.json written",
        flush=True,
    )
    failed = [n for n, s in report["scenarios"].items() if s.get("failures")]
    if failed:
        print(f"make cluster: FAILED scenarios: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
