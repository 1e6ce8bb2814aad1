"""What the shipped Grafana dashboard and Prometheus rules ask of ackflow's metrics: the metric
names in PromQL expressions, and every series name ackflow's collectors can expose.

`metric_names` is no PromQL parser: it strips what cannot name a metric (strings, label
matchers, ranges, grouping clauses, Grafana variables) and keeps the identifiers that are not
function calls or keywords. `exposed` lists every family of every collector ackflow registers,
also those registered only on engines, workers or serve, as (name, type, label names), and
`series_names` what Prometheus sees of a family: ``_total`` for counters, ``_bucket``,
``_sum`` and ``_count`` for histograms, and so on."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from runner import metrics
from runner.config import Config
from runner.ops.fleet import FleetCollector
from runner.store.memory import MemoryStore

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIERS = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
    | {"offset", "inf", "nan", "atan2", "Inf", "NaN"}
)
# The PromQL functions and aggregations the shipped files may call (a typo is not one).
FUNCTIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile"}
    | {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "abs"}
    | {"histogram_quantile", "clamp_min", "clamp_max", "absent", "absent_over_time", "vector"}
    | {"max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "time", "timestamp"}
    | {"label_replace", "round", "sort", "sort_desc", "scalar", "count_values", "predict_linear"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (Grafana's ``label_values(metric, label)`` included).
    Raises `ValueError` for a call of something that is not a PromQL function."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
    if m:
        expr = m.group(1)
    text = _VARIABLES.sub(" 1 ", _STRINGS.sub('""', expr))
    text = _RANGES.sub("", _MATCHERS.sub("", text))
    text = _GROUPING.sub("", text)
    names = set()
    for name, call in _IDENTIFIERS.findall(text):
        if call:
            if name not in FUNCTIONS:
                raise ValueError(f"{name}() is not a PromQL function, in {expr!r}")
        elif name not in KEYWORDS:
            names.add(name)
    return names


def _fleet() -> Collector:
    return FleetCollector(Config(), MemoryStore(), lambda: None)


def collectors() -> list[Collector]:
    """Every collector ackflow registers anywhere: the registry's, and those that engines,
    workers and serve add (`describe`/`collect` of these read nothing)."""
    return [
        metrics.REGISTRY,
        metrics.STORE_DURABLE,
        metrics.STORE_SETTINGS,
        metrics.RunsByStatus(MemoryStore()),
        metrics.TasksRunning(dict, 1),
        _fleet(),
    ]


def exposed() -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(family name, type, label names) of every family ackflow's collectors expose."""
    wrappers = {m._name: m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    seen = set()
    for c in collectors():
        for family in c.describe() if isinstance(c, FleetCollector) else c.collect():
            if family.name in seen:
                continue
            seen.add(family.name)
            if family.name in wrappers:
                labels = tuple(wrappers[family.name]._labelnames)
            else:
                labels = tuple(getattr(family, "_labelnames", ())) or tuple(
                    sorted({k for s in family.samples for k in s.labels})
                )
            yield family.name, family.type, labels


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def series_names(name: str, kind: str) -> set[str]:
    """The series names Prometheus scrapes for a family of this name and type."""
    return {name + s for s in _SUFFIXES.get(kind, ("",))}


def known_series() -> set[str]:
    return {s for name, kind, _ in exposed() for s in series_names(name, kind)}


def prometheus_tool(name: str) -> str:
    """The path of ``promtool`` or ``prometheus`` (Debian's prometheus package, which
    .ci/setup.sh installs); skip without it, or fail under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    message = (
        f"{name} is missing: make test installs it when it can (.ci/setup.sh: apt-get install prometheus)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: a failure)")
    pytest.skip(message)
