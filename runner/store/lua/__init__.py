"""The Redis store's Lua scripts, one ``.lua`` file each, read once at import.

- ``commit.lua``: the guarded, idempotent commit (`COMMIT`).
- ``claim.lua``: claiming due timers (`CLAIM`).
- ``beat.lua``: a worker's heartbeat, renewing its lease (`BEAT`).
- ``index.lua``, ``schedule.lua``, ``claim_bucket.lua``: on a Redis Cluster, a run's
  entries in the global indexes (`INDEX`), adding and forgetting timers in a timer bucket
  (`SCHEDULE`) and claiming the due timers of one bucket (`CLAIM_BUCKET`).

A script builds a few key names itself (keys outside the ones passed in KEYS, or members of
an index). So that runner/store/keys.py stays the one place that knows every key template,
those names are not spelt in the scripts: each script is prefixed with Lua functions
*rendered from keys.py's own functions* (`PRELUDE`): calling ``keys.flow_status_index`` with
marker arguments shows where each argument goes, and the literal text around them becomes
Lua strings. A change of a template in keys.py therefore changes the scripts with it.

The prelude is one line, so a Redis error's line number is the ``.lua`` file's plus one.
Imports nothing but the standard library and `keys`; the files ship in the wheel as
package data (pyproject.toml).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources

from runner.store import keys

_MARK = "\x00"
_ARG = re.compile(f"{_MARK}(\\w+){_MARK}")


def lua_string(text: str) -> str:
    """A Lua string literal of ``text``; every byte outside printable ASCII, the quote and the
    backslash as a three-digit decimal escape (a shorter one would swallow a following digit)."""
    return "'" + "".join(c if " " <= c <= "~" and c not in "'\\" else f"\\{ord(c):03d}" for c in text) + "'"


def lua_function(name: str, template: Callable[..., str], params: tuple[str, ...]) -> str:
    """``local function name(params) return <the template, as Lua concatenation> end``."""
    marks = [f"{_MARK}{p}{_MARK}" for p in params]
    rendered = template(*marks)
    unused = [p for p, m in zip(params, marks, strict=True) if m not in rendered]
    if unused:  # a parameter the template dropped would silently build a different key
        raise ValueError(f"{name}: keys.py's template does not use {unused}")
    pieces = _ARG.split(rendered)  # literal, parameter, literal, ...
    parts = [p if i % 2 else lua_string(p) for i, p in enumerate(pieces) if i % 2 or p]
    return f"local function {name}({', '.join(params)}) return {' .. '.join(parts)} end"


def prelude() -> str:
    """The key helpers every script may use, rendered from runner.store.keys, on one line."""
    return " ".join(
        [
            lua_function("run_key", keys.run_key, ("prefix", "run", "part")),
            lua_function("flow_status_index", keys.flow_status_index, ("prefix", "flow", "status")),
            lua_function("timer_member", keys.timer_member, ("run", "timer")),
            f"local JOIN_SEP = {lua_string(keys.JOIN_SEP)}",
            f"local TIMERS = {lua_string(keys.TIMERS)}",
        ]
    )


def load(name: str) -> str:
    """The script ``<name>.lua`` with the prelude in front."""
    body = resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return f"{PRELUDE}\n{body}"


PRELUDE = prelude()
COMMIT = load("commit")
CLAIM = load("claim")
BEAT = load("beat")
INDEX = load("index")
SCHEDULE = load("schedule")
CLAIM_BUCKET = load("claim_bucket")
