"""Logging: readable by default, JSON lines for machines; every line about a run says which.

The engine (per event) and the worker (per task) set the run, task and attempt they work on
in a context variable; a filter copies them onto every record logged meanwhile, so any line
— ours or a library's — carries them. A last line of defence scrubs URL passwords and
completion tokens from every message, whatever logged it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[tuple[str, str, int] | None] = contextvars.ContextVar(
    "ackflow_log", default=None
)

# A URL's password: from the first ':' after "scheme://user" to the LAST '@' of the URL's
# whitespace-free stretch of text, so a password holding '@', ':', '/' or quotes is hidden
# whole, as `config.redact_url` does; text glued to the URL with another '@' is hidden too
# (better too much than a password's tail). Found per stretch, in time linear in the text.
_STRETCH_RE = re.compile(r"(?<!\S)\S*://\S*")
_URL_HEAD_RE = re.compile(r"(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*://[^:\s]*:")
# Where a ';'-separated list of URLs (ACKFLOW_BROKER_URL) may start its next URL.
_NEXT_URL_RE = re.compile(r";(?=[a-zA-Z][a-zA-Z0-9+.-]*://)")
_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9-])af1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _hide_password(stretch: re.Match[str]) -> str:
    text = stretch.group()
    if ";" in text:
        return ";".join(_hide_in(url) for url in _list_urls(text))
    return _hide_in(text)


def _has_password(text: str) -> bool:
    head = _URL_HEAD_RE.match(text)
    return head is not None and text.rfind("@") > head.end()


def _list_urls(text: str) -> list[str]:
    """The URLs of a ';'-separated list, each hidden on its own. A piece becomes a URL of its
    own only if it starts with ``scheme://user:…@``; any other piece stays with the one before,
    whose password may hold the ';' (then the whole is hidden to its last '@', as before)."""
    out: list[str] = []
    for piece in _NEXT_URL_RE.split(text):
        if out and not _has_password(piece):
            out[-1] += ";" + piece
        else:
            out.append(piece)
    return out


def _hide_in(text: str) -> str:
    head = _URL_HEAD_RE.search(text)
    if head is None:
        return text
    at = text.rfind("@")
    return text if at <= head.end() else f"{text[: head.end()]}***{text[at:]}"


def scrub(text: str) -> str:
    """Replace passwords in URLs and completion tokens."""
    if "://" in text:
        text = _STRETCH_RE.sub(_hide_password, text)
    return _TOKEN_RE.sub("af1.<token>", text)


def scrub_data(value: Any) -> Any:
    """``value`` with `scrub` applied to every string in it, dict keys included (for JSON)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(v) for v in value]
    return value


@contextmanager
def about(run_id: str, task: str = "", attempt: int = 0) -> Iterator[None]:
    """Every line logged in this block (in this thread) is about this run, task and attempt."""
    token = _context.set((run_id, task, attempt))
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        run_id, task, attempt = ctx if ctx else ("", "", 0)
        record.run_id, record.task, record.attempt = run_id, task, attempt
        try:
            record.msg = scrub(record.getMessage())
            record.args = None
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it, not raise here
            pass
        return True


def _where(record: logging.LogRecord) -> tuple[str, str, int]:
    return getattr(record, "run_id", ""), getattr(record, "task", ""), getattr(record, "attempt", 0)


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the stdlib's name
        line = super().formatMessage(record)
        run_id, task, attempt = _where(record)
        if run_id:  # right after the message, before any traceback
            line += f" [run={run_id}" + (f" task={task} attempt={attempt}" if task else "") + "]"
        return line

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))  # the traceback too


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        run_id, task, attempt = _where(record)
        if run_id:
            out["run_id"] = run_id
            if task:
                out["task"], out["attempt"] = task, attempt
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once: ``fmt`` is "text" or "json"."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
