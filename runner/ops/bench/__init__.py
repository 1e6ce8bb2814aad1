"""``ackflow bench``: how fast ackflow runs next to what a user would pick instead, and next to
the physical limit, measured side by side in one run against the configured RabbitMQ and Redis.

- `plan`: the sizes of each workload (default, ``--quick``, the tests' smoke run) and the peers.
- `rounds`: N rounds, each workload on ackflow and on its peer in alternating order (ABBA);
  then, once, the size-independence flows, the idle latency and the physical limits.
- `ackflow_runs`, `celery_peer` (+ `celery_app`), `taskflow_peer`: each side's workloads.
- `cpu`: CPU seconds per 1,000 steps per process kind, from ``/proc``.
- `size`, `limits`, `failover`: one-off measurements; `procs`: ackflow's processes.
- `report`: medians, ratios, targets, the markdown tables and the JSON.
"""

from __future__ import annotations

import json

from runner.config import Config
from runner.errors import AckflowError
from runner.ops.bench.ackflow_runs import distributed, local_mode
from runner.ops.bench.plan import DEFAULT, QUICK, SMOKE, Sizes
from runner.ops.bench.report import as_json, markdown, summarise
from runner.ops.bench.rounds import run


class BenchFailed(AckflowError):
    """A measurement after the rounds failed (the rounds' table was printed first)."""


__all__ = ["BenchFailed", "DEFAULT", "QUICK", "SMOKE", "Sizes", "distributed", "local_mode", "main"]


def main(
    base: Config, sz: Sizes, peers: tuple[str, ...], scale: bool = False, json_path: str | None = None
) -> str:
    """Run the bench, print its tables (markdown) and return them; write the JSON if asked."""
    raw = run(base, sz, peers, scale)
    summary = summarise(raw, sz, scale)
    text = markdown(raw, summary, sz)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(as_json(raw, summary, sz), f, indent=2)
    print(text)
    if "error" in raw:
        raise BenchFailed(raw["error"])
    return text
