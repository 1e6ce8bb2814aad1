"""Show any stored value (results, inputs) as compact JSON, bounded in depth and size.

Hazards: pretty-printing indents quadratically in the nesting depth (a 80 KB result became a
65 MB page); msgpack values may have bytes or mixed-type keys that JSON cannot hold (the page
failed); and a legal 1 MiB result would make every view of the page as large. So: keys become
strings, anything JSON has no form for becomes its repr, nesting past `MAX_DEPTH` becomes "…",
and the text is cut at `MAX_CHARS` with how much was left out.
"""

from __future__ import annotations

import json
import math
from typing import Any

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
