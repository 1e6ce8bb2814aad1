"""What a bench run measures and how much of it: the sizes of each workload (default,
``--quick``, and the tests' smoke sizes), the peers and whether each is installed."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

PEERS = {"celery": "Celery", "taskflow": "TaskFlow"}
INSTALL = "pip install -e '.[bench]'"


@dataclass(frozen=True)
class Sizes:
    rounds: int = 5
    chains: int = 200  # ten-step chains submitted at once
    chords: int = 50
    chord_width: int = 20
    local_chains: int = 50  # ten-step chains one at a time, in one process
    flow_sizes: tuple[int, ...] = (10, 1_000, 10_000)
    idle_runs: int = 30
    limits: bool = True  # raw kombu/Redis, failover, memory footprint (once, after the rounds)
    raw_msgs: int = 10_000
    failover_kills: int = 10
    footprint_runs: int = 5_000


DEFAULT = Sizes()
QUICK = Sizes(
    rounds=1,
    chains=40,
    chords=10,
    local_chains=20,
    flow_sizes=(10, 100, 1_000),
    idle_runs=10,
    limits=False,
)
# The tests' end-to-end run: every workload, tiny.
SMOKE = Sizes(
    rounds=1,
    chains=2,
    chords=1,
    chord_width=3,
    local_chains=2,
    flow_sizes=(2, 5),
    idle_runs=3,
    limits=False,
)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def peer_versions(wanted: tuple[str, ...]) -> dict[str, str | None]:
    """Each known peer -> its installed version, or None (the reason is `absent_reason`)."""
    out: dict[str, str | None] = {}
    for name in PEERS:
        out[name] = importlib.metadata.version(name) if name in wanted and installed(name) else None
    return out


def absent_reason(name: str, wanted: tuple[str, ...]) -> str:
    if name not in wanted:
        return "not run (--peers)"
    return f"not installed ({INSTALL})"


def parse_peers(text: str) -> tuple[str, ...]:
    """``--peers``: a comma-separated list of `PEERS`, or ``none``."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}: choose from {', '.join(PEERS)} or none")
    return names
