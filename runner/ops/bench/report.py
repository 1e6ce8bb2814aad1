"""From the rounds' raw figures to medians, ratios and targets: the markdown tables that
``ackflow bench`` prints and the JSON it writes with ``--json``."""

from __future__ import annotations

import statistics
from typing import Any

from runner.ops.bench.plan import PEERS, Sizes

KINDS = ("engine", "worker", "client", "in-process", "celery worker", "rabbitmq", "redis")
# Issue 18's targets: (ratio at least, or for latency/bytes at most)
TARGETS = {"chains": 2.0, "chords": 2.0, "local": 10.0, "scale2": 1.0, "scale4": 1.0}
SIZE_TARGET, BYTES_TARGET, IDLE_P50_TARGET_MS = 0.8, 1024.0, 25.0


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _n(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def workloads(sz: Sizes, scale: bool) -> dict[str, tuple[str, str]]:
    """Workload key -> (what it is, its peer: a `PEERS` name or ``ackflow 1 + 1``)."""
    rows = {
        "chains": (f"{sz.chains} ten-step chains, 1 engine + 1 worker (`-c 8`)", "celery"),
        "chords": (f"{sz.chords} chords of {sz.chord_width} + 1, 1 engine + 1 worker", "celery"),
        "local": (f"{sz.local_chains} ten-step chains one at a time, one process (local mode)", "taskflow"),
        "scale2": (f"{sz.chains} ten-step chains, 2 engines + 2 workers", "ackflow 1 + 1"),
    }
    if scale:
        rows["scale4"] = (f"{sz.chains} ten-step chains, 4 engines + 4 workers", "ackflow 1 + 1")
    return rows


def summarise(raw: dict[str, Any], sz: Sizes, scale: bool) -> dict[str, Any]:
    """Per workload: each side's steps/s of every round, median, min, max, CPU per 1,000 steps
    (median per process kind), the peer's name (or why it is absent), the ratio
    ackflow / peer of the medians and whether the target is met."""
    out: dict[str, Any] = {}
    rounds = raw["rounds"]
    for key, (label, peer) in workloads(sz, scale).items():
        sides = {"ackflow": rounds.get(key, {}).get("ackflow", [])}
        if peer in PEERS:
            sides["peer"] = rounds.get(key, {}).get("peer", [])
            name = f"{PEERS[peer]} {raw['peers'][peer]}" if raw["peer_installed"][peer] else None
            absent = None if name else f"{PEERS[peer]}: {raw['peers'][peer]}"
        else:  # scale-out: against this run's 1 + 1 chains
            sides["peer"] = rounds.get("chains", {}).get("ackflow", [])
            name, absent = peer, None
        row: dict[str, Any] = {"workload": label, "peer_name": name, "absent": absent}
        for side, figs in sides.items():
            rates = [f["steps_per_s"] for f in figs]
            cpu = {k: _median([f["cpu_per_1000"][k] for f in figs if k in f["cpu_per_1000"]]) for k in KINDS}
            row[side] = {
                "steps_per_s": rates,
                "median": _median(rates),
                "min": min(rates, default=None),
                "max": max(rates, default=None),
                "cpu_per_1000": {k: v for k, v in cpu.items() if v is not None},
            }
        a, p = row["ackflow"]["median"], row["peer"]["median"]
        row["ratio"] = a / p if a and p else None
        pairs = zip(row["ackflow"]["steps_per_s"], row["peer"]["steps_per_s"], strict=False)
        row["ratio_per_round"] = [x / y for x, y in pairs] if row["absent"] is None else []
        row["target"] = TARGETS[key]
        row["met"] = None if row["ratio"] is None else row["ratio"] >= TARGETS[key]
        out[key] = row
    return out


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "**missed**")


def peer_table(summary: dict[str, Any], rounds: int) -> list[str]:
    lines = [
        f"ackflow vs peers: steps/s, median of {rounds} interleaved rounds (min-max); ratio = ackflow / peer",
        "",
        "| workload | ackflow | peer | peer steps/s | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.values():
        a, p = row["ackflow"], row["peer"]
        mine = f"{_n(a['median'])} ({_n(a['min'])}-{_n(a['max'])})"
        if row["absent"]:
            theirs, peer = "—", row["absent"]
        else:
            theirs, peer = f"{_n(p['median'])} ({_n(p['min'])}-{_n(p['max'])})", row["peer_name"]
        ratio = "—" if row["ratio"] is None else f"**{row['ratio']:.2f}**"
        lines.append(
            f"| {row['workload']} | {mine} | {peer} | {theirs} | {ratio} | ≥ {row['target']:g} {_verdict(row['met'])} |"
        )
    return lines


def cpu_table(summary: dict[str, Any]) -> list[str]:
    kinds = [
        k
        for k in KINDS
        if any(k in row[s]["cpu_per_1000"] for row in summary.values() for s in ("ackflow", "peer"))
    ]
    lines = [
        "CPU seconds per 1,000 steps, by process kind (median of the rounds; RabbitMQ and Redis serve the",
        "whole machine, so on a shared box theirs are upper bounds)",
        "",
        f"| workload | system | {' | '.join(kinds)} | total |",
        "|---|---|" + "---|" * (len(kinds) + 1),
    ]
    for key, row in summary.items():
        for side in ("ackflow", "peer"):
            cpu = row[side]["cpu_per_1000"]
            if not cpu or (side == "peer" and key.startswith("scale")):
                continue
            who = "ackflow" if side == "ackflow" else row["peer_name"]
            cells = " | ".join(_n(cpu.get(k), 2) for k in kinds)
            lines.append(f"| {key} | {who} | {cells} | {_n(sum(cpu.values()), 2)} |")
    return lines


def size_table(size: dict[str, Any], sizes: tuple[int, ...]) -> list[str]:
    head = " | ".join(f"{n:,} tasks" for n in sizes)
    lines = [
        "Size independence: one flow alone on 1 + 1, steps/s from submit to result; Redis bytes per task",
        "state of the largest run (MEMORY USAGE of its keys / tasks)",
        "",
        f"| shape | {head} | largest / smallest | Redis bytes per task |",
        "|---|" + "---|" * (len(sizes) + 2),
    ]
    for shape, s in size.items():
        rates = " | ".join(_n(s["sizes"][str(n)]["steps_per_s"]) for n in sizes)
        ratio = s["largest_over_smallest"]
        b = s["sizes"][str(max(sizes))]["bytes_per_task"]
        lines.append(
            f"| {shape} | {rates} | **{ratio:.2f}** (≥ {SIZE_TARGET} {_verdict(ratio >= SIZE_TARGET)}) "
            f"| {b:,.0f} (≤ 1 KiB {_verdict(b <= BYTES_TARGET)}) |"
        )
    return lines


def markdown(raw: dict[str, Any], summary: dict[str, Any], sz: Sizes) -> str:
    lines = [*peer_table(summary, sz.rounds), "", *cpu_table(summary)]
    if "size" in raw:
        lines += ["", *size_table(raw["size"], sz.flow_sizes)]
    if "idle" in raw:
        idle = raw["idle"]
        p50 = idle["p50_ms"]
        lines += [
            "",
            f"Idle latency of one 10-step chain on 1 + 1 ({int(idle['runs'])} runs one after another): "
            f"p50 **{p50:.1f} ms** (target < {IDLE_P50_TARGET_MS:g} ms {_verdict(p50 < IDLE_P50_TARGET_MS)}), "
            f"p99 {idle['p99_ms']:.1f} ms",
        ]
    if "limits" in raw:
        lines += ["", "Physical limits and robustness (once)", "", "| case | value |", "|---|---|"]
        lines += [f"| {k} | {_n(v, 1)} |" for k, v in raw["limits"].items()]
    if "error" in raw:
        lines += ["", f"The measurements after the rounds failed: {raw['error']}"]
    if "redis" in raw:
        lines += ["", f"Redis: {raw['redis']}."]
    lines += ["", f"({raw['seconds']:.0f} s in all)"]
    return "\n".join(lines)


def as_json(raw: dict[str, Any], summary: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    from dataclasses import asdict

    return {"sizes": asdict(sz), "workloads": summary, **raw}  # raw: every round's figures
