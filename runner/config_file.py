"""An optional TOML file of settings, with the keys of the environment variables.

```toml
# ackflow.toml — named by ACKFLOW_CONFIG or `ackflow --config FILE`
broker_url = "amqp://ackflow:secret@rabbit1:5672//;amqp://ackflow:secret@rabbit2:5672//"
redis_url = "redis://redis:6379/0"
prefix = "shop"
require_durable_store = true
```

A key is a setting's name (``broker_url``) or its variable (``ACKFLOW_BROKER_URL``), at the
top level or in an ``[ackflow]`` table. Values have the setting's type (a number where it is a
number, ``true``/``false`` where it is a flag). The environment wins over the file, options
over both. Unknown keys and wrong types are refused, naming the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

ENV_VAR = "ACKFLOW_CONFIG"
"""The variable naming the file (``ackflow --config`` sets it for one command)."""


def read(path: str, types: Mapping[str, type]) -> dict[str, Any]:
    """The settings in the file at ``path``: setting name -> value, checked against
    ``types`` (each setting's type)."""
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found ({ENV_VAR} or --config names it)") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path}: {e}") from None
    table = data.pop("ackflow", {}) if isinstance(data.get("ackflow"), dict) else {}
    out: dict[str, Any] = {}
    for key, value in [*data.items(), *table.items()]:
        name = key.lower().removeprefix("ackflow_")
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"config file {path}: unknown setting {key!r}{hint}")
        out[name] = _checked(path, key, value, types[name])
    return out


def _checked(path: str, key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        want = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
        raise ConfigError(
            f"config file {path}: {key} must be {want.get(kind, kind.__name__)}, not {type(value).__name__}"
        )
    return value
