"""The task catalogue, client side: for each task a worker (or ``ackflow flows register|apply``)
serves, what compiling a flow over it needs (`runner.define.catalogue`), recorded in the store
by name, each version under its digest. ``ackflow serve`` compiles inline flow definitions
(``POST /v1/runs`` with ``"definition"``) against it without importing any user code.

The latest entry of a task wins: two workers serving different versions of one task record
in turn, and a definition compiled later uses whichever recorded last (as the flow registry).
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Mapping
from typing import Any

import yaml

from runner.define import catalogue, data
from runner.define.spec import FlowSpec
from runner.define.tasks import Registry
from runner.errors import FlowDefinitionError
from runner.protocol import pack, unpack
from runner.store import Store


def digest_of(entry: Mapping[str, Any]) -> str:
    """An entry's digest: the same for the same entry, wherever it is recorded."""
    return hashlib.sha256(pack(dict(entry))).hexdigest()[:32]


def record(store: Store, registry: Registry, by: str = "") -> list[str]:
    """Record every task of ``registry`` in the catalogue (an unchanged entry again: a no-op
    beyond its time); returns the names recorded."""
    at, who = int(time.time() * 1000), by or socket.gethostname()
    names = []
    for e in catalogue.entries(registry):
        digest = digest_of(e)
        info = {"digest": digest, "at": at, "by": who, "entry": e}
        store.put_task(e["name"], digest, pack(e), pack(info))
        names.append(str(e["name"]))
    return names


def infos(store: Store) -> dict[str, dict[str, Any]]:
    """Each catalogued task's name -> {"digest", "at", "by", "entry"} of its latest entry
    (entries that cannot be unpacked are left out)."""
    out = {}
    for name, raw in store.list_tasks().items():
        try:
            d = unpack(raw)
        except Exception:  # noqa: BLE001 - a damaged entry is one task less, never a failure
            continue
        if isinstance(d, dict) and isinstance(d.get("entry"), dict):
            out[name] = d
    return out


def stand_ins(store: Store) -> Registry:
    """A registry of stand-ins for every catalogued task (`runner.define.catalogue.stand_ins`)."""
    return catalogue.stand_ins(d["entry"] for d in infos(store).values())


def compile_definition(store: Store, definition: Any, source: str = "definition") -> FlowSpec:
    """Compile an inline flow definition — a flow document (`runner.define.data`) as a mapping,
    or its YAML/JSON text — against the catalogue, importing nothing (its ``modules`` are not
    imported). Raises `FlowDefinitionError` (with the path in the document, and the line for
    text) exactly as ``ackflow flows apply`` would; also for YAML aliases and for a document
    nested too deeply to compile."""
    registry = stand_ins(store)
    try:
        if isinstance(definition, str):
            _refuse_aliases(definition, source)
            flow = data.parse(definition, source, registry, imports=False)
        else:
            flow = data.from_data(definition, registry, imports=False, source=source)
        return flow.compile(registry)
    except RecursionError:
        raise FlowDefinitionError(f"{source}: nested too deeply") from None


def _refuse_aliases(text: str, source: str) -> None:
    """YAML aliases (``*name``) are refused in a definition sent to a server: a few hundred
    bytes of aliases of aliases make an exponentially large document (a "billion laughs")."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise FlowDefinitionError(
                    f"{source}:{line}: YAML aliases (*{event.anchor}) are not accepted in an inline "
                    "definition; write the value out"
                )
    except yaml.YAMLError:
        return  # parsing reports it, with its line
