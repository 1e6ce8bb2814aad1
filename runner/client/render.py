"""Runs, history entries and stored values as text for people: the CLI, the dashboard, the demos.

Nothing here prints or scrubs: callers do (the CLI through its one output boundary, the
dashboard by escaping and scrubbing each field), so each chooses what it shows where.

Stored values (results, inputs) are shown as compact JSON, bounded in depth and size.
Hazards: pretty-printing indents quadratically in the nesting depth (a 80 KB result became a
65 MB page); msgpack values may have bytes or mixed-type keys that JSON cannot hold (the page
failed); and a legal 1 MiB result would make every view of the page as large. So: keys become
strings, anything JSON has no form for becomes its repr, nesting past `MAX_DEPTH` becomes "…",
and the text is cut at `MAX_CHARS` with how much was left out.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from runner.client.info import HistoryEntry, RunInfo

MAX_DEPTH = 32
MAX_CHARS = 64_000
_CUT = object()


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as data `json.dumps` takes: str keys, lists, finite numbers, strings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {_key(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    return repr(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "backslashreplace")
    return json.dumps(json_safe(key, MAX_DEPTH - 1), ensure_ascii=False)


def show(value: Any, max_chars: int = MAX_CHARS) -> str:
    """Compact JSON of ``value`` (see the module), at most ``max_chars`` plus a note."""
    text = json.dumps(json_safe(value), ensure_ascii=False, separators=(", ", ": "))
    return cut(text, max_chars)


def cut(text: str, max_chars: int) -> str:
    """``text`` up to ``max_chars``, then "… N bytes more" (N counted in UTF-8)."""
    if len(text) <= max_chars:
        return text
    more = len(text[max_chars:].encode("utf-8", "surrogatepass"))
    return f"{text[:max_chars]} … {more:,} bytes more"


# --- runs and their history, as lines of text ---------------------------------------------


def timestamp(ms: int | None, precise: bool = True) -> str:
    """``2026-12-01 23:45:40.123`` (UTC; to the second unless ``precise``), or "-" for no time.

    A time datetime cannot show is given as its number: times come from events, whose senders
    set them (a forged one past year 9999 once made run pages and ``status`` raise).
    """
    if not ms:
        return "-"
    try:
        text = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    except (ValueError, OverflowError, OSError):
        return f"{ms} (ms since 1970)"
    return text[:-3] if precise else text[:-7]


def history_line(entry: HistoryEntry) -> str:
    return f"{timestamp(entry.at_ms)}  {entry.describe()}"


def progress_line(task: str, fraction: float, message: str) -> str:
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    return f"{timestamp(now_ms)}  task {task}: {fraction:.0%} {message}"


def to_json(value: Any, sort_keys: bool = True) -> str:
    """``value`` as one line of JSON, whatever it holds (`json_safe`)."""
    return json.dumps(json_safe(value), sort_keys=sort_keys)


def _ending(info: RunInfo, traceback: bool) -> list[str]:
    """The run's result, or the error that ended it (with its traceback, if asked)."""
    lines = []
    if info.result is not None:
        lines.append("result: " + to_json(info.result))
    if info.error:
        e = info.error
        lines.append(f"error in task {e.get('task')!r}: {e.get('type')}: {e.get('message')}")
        if traceback and e.get("traceback"):
            lines.append(str(e["traceback"]).rstrip())
    return lines


def outcome_lines(info: RunInfo) -> list[str]:
    """How a finished run ended: its status, then its result or its error."""
    return [f"run {info.run_id}: {info.status}", *_ending(info, traceback=False)]


def status_lines(info: RunInfo) -> list[str]:
    """A run in full: its state and times, each task's, and its result or error with traceback."""
    lines = [
        f"run {info.run_id}  flow {info.flow}  {info.status}",
        f"created {timestamp(info.created_ms)}  finished {timestamp(info.finished_ms)}",
    ]
    if info.parent is not None:
        lines.append(f"child of run {info.parent[0]} (task {info.parent[1]}, attempt {info.parent[2]})")
    c = info.control
    if c and c.get("action") in ("pause", "cancel") and info.status in ("PAUSED", "CANCELLED"):
        why = f": {c['reason']}" if c.get("reason") else ""
        lines.append(f"{info.status.lower()} by {c.get('by') or '?'} at {timestamp(c.get('at'))}{why}")
    if info.inputs:
        lines.append(f"inputs {show(info.inputs, 2000)}")
    for t in info.tasks.values():
        dur = took(t.duration_ms, t.waiting_ms, t.finished_ms)
        if t.progress is not None:
            dur = f"{t.progress[0]:.0%} {t.progress[1]}".rstrip()
        lines.append(f"  {t.name:<30} {t.status:<10} attempt {t.attempt:<3} {dur}")
        if t.error:
            lines.append(f"      {t.error['type']}: {t.error['message']}")
        if t.retry_at_ms:
            lines.append(f"      next attempt at {timestamp(t.retry_at_ms)}")
        if t.revert_error:
            lines.append(f"      revert failed: {t.revert_error['type']}: {t.revert_error['message']}")
        if t.child:
            lines.append(f"      child run {t.child}")
    return lines + _ending(info, traceback=True)


def seconds(ms: int) -> str:
    """A duration for people: ``850 ms``, ``<1 ms``, ``12.4 s``, ``3 min 20 s``, ``2 h 5 min``."""
    if ms < 1:
        return "<1 ms"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min {ms % 60_000 // 1000} s"
    return f"{ms // 3_600_000} h {ms % 3_600_000 // 60_000} min"


def took(body_ms: int | None, waiting_ms: int | None, finished_ms: int | None) -> str:
    """How long a finished attempt took: its body's run time (a task that returned within
    the millisecond shows ``<1 ms``, not ``0 ms``), and how long it then waited for an outside
    completion or a child run."""
    if body_ms is None:
        return ""
    text = seconds(body_ms)
    if waiting_ms and finished_ms and finished_ms >= waiting_ms:
        text += f", waited {seconds(finished_ms - waiting_ms)}"
    return text


def summary_dict(info: RunInfo) -> dict[str, Any]:
    """A run as ``list --json`` shows it: without its tasks."""
    return {
        "run_id": info.run_id,
        "status": info.status,
        "flow": info.flow,
        "created_ms": info.created_ms,
        "finished_ms": info.finished_ms,
    }


def run_dict(info: RunInfo) -> dict[str, Any]:
    """A run as data (``status --json``): its summary, result, error and each task's fields."""
    tasks = {
        n: {
            "status": t.status,
            "attempt": t.attempt,
            "worker": t.worker,
            "duration_ms": t.duration_ms,
            "error": t.error,
            "progress": list(t.progress) if t.progress else None,
            "retry_at_ms": t.retry_at_ms,
            "revert_error": t.revert_error,
            "child": t.child,
            "started_ms": t.started_ms,
            "finished_ms": t.finished_ms,
            "waiting_ms": t.waiting_ms,
        }
        for n, t in info.tasks.items()
    }
    parent = dict(zip(("run", "task", "attempt"), info.parent, strict=True)) if info.parent else None
    return {
        **summary_dict(info),
        "inputs": info.inputs,
        "result": info.result,
        "error": info.error,
        "parent": parent,
        "control": info.control,
        "tasks": tasks,
    }


def history_dict(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry as ``history --json`` shows it."""
    return {
        "at_ms": entry.at_ms,
        "event": entry.event,
        "kind": entry.kind,
        "scope": entry.scope,
        "from": entry.old,
        "to": entry.new,
        "attempt": entry.attempt,
        **entry.extra,
    }
