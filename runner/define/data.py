"""Flows as data: a flow written in YAML or JSON over registered tasks, built into the same
`Flow` a Python definition builds (and so compiled and checked exactly like one).

```yaml
flow: checkout                 # the flow's name
type: linear                   # linear (default) | unordered | graph
modules: [shop]                # imported first: they register the tasks named below
items:
  - task: fetch_order
  - flow:                      # a nested flow
      name: prepare
      type: unordered
      items: [{task: reserve_stock}, {task: price_order}]
  - task: charge_card
    name: charge               # the node's name (default: the task's)
    rebind: {order: order}     # parameter -> the value it takes
    provides: payment          # or a list (the task returns a sequence or mapping)
    retry: {attempts: 3, delay: 1.0}   # or a number of attempts
    timeout: 30
    queue: payments
  - map: {task: square, over: ids, into: x, provides: squares, limit: 4}
outputs: [total, payment]
# graph only: edges: [[a, b], {from: a, to: b, when: {value: amount, op: ">", arg: 100}}]
# a node's join: all (default), any, or a number
```

Every mistake is a `FlowDefinitionError` naming where it is: the file, the line, and the path
(``items[2].retry.attempts``). The format's JSON Schema is ``runner/define/flow.schema.json``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from runner.define import flows as flow_dsl
from runner.define.compile import Flow
from runner.define.conditions import when
from runner.define.loading import import_module
from runner.define.retry import Retry
from runner.define.tasks import REGISTRY, Registry, TaskNode
from runner.errors import FlowDefinitionError

SCHEMA = Path(__file__).with_name("flow.schema.json")

_FLOW_KEYS = ("flow", "name", "type", "items", "edges", "outputs", "version", "modules")
_TASK_KEYS = ("task", "name", "rebind", "provides", "requires", "queue", "retry", "timeout", "join")
_MAP_KEYS = ("task", "over", "into", "provides", "name", "limit")
_RETRY_KEYS = ("attempts", "delay", "factor", "max_delay", "jitter", "on")
_IMPORT_HINT = "is its module imported? modules: [...] in the file, or -m"


class _Where:
    """Names a place in the document: its path, and its line when the text was YAML/JSON."""

    def __init__(self, source: str, lines: Mapping[tuple[Any, ...], int], hint: str = _IMPORT_HINT) -> None:
        self.source, self.lines, self.hint = source, lines, hint

    def error(self, path: tuple[Any, ...], message: str) -> FlowDefinitionError:
        at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        where = f"{self.source}:{line}" if line is not None else self.source
        return FlowDefinitionError(f"{where}: {at + ': ' if at else ''}{message}")


def load(path: str | Path, registry: Registry | None = None) -> Flow:
    """The flow defined in a YAML or JSON file (its ``modules`` imported first)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise FlowDefinitionError(f"{path}: {e.strerror or e}") from None
    return parse(text, str(path), registry)


def parse(
    text: str, source: str = "<flow>", registry: Registry | None = None, *, imports: bool = True
) -> Flow:
    """The flow defined by YAML or JSON ``text`` (JSON is YAML here; both give line numbers);
    ``imports=False``: see `from_data`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise FlowDefinitionError(
            f"{source}{line}: not valid YAML or JSON: {getattr(e, 'problem', e)}"
        ) from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    return from_data(data, registry, _Where(source, lines), imports=imports)


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _lines(value, (*path, k), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def from_data(
    data: Any,
    registry: Registry | None = None,
    where: _Where | None = None,
    *,
    imports: bool = True,
    source: str = "<flow>",
) -> Flow:
    """The flow a mapping describes (the document's top level).

    ``imports=False`` imports nothing (``modules`` is checked, not imported): the tasks are
    those of ``registry``, e.g. stand-ins built from the task catalogue (`runner.define.catalogue`),
    so that no user code runs where the document is compiled."""
    hint = (
        _IMPORT_HINT
        if imports
        else "is a worker serving it started? workers record their tasks in the catalogue"
    )
    w = where or _Where(source, {}, hint)
    if not imports:
        w.hint = hint
    doc = _mapping(data, (), w, _FLOW_KEYS)
    for i, module in enumerate(_list(doc.get("modules", []), ("modules",), w)):
        if not isinstance(module, str):
            raise w.error(("modules", i), "a module name (a string)")
        if imports:
            import_module(module)
    if "flow" not in doc and "name" not in doc:
        raise w.error((), "the flow's name is missing (flow: NAME)")
    return _flow(doc, (), w, registry or REGISTRY, "flow" if "flow" in doc else "name")


def _flow(doc: Mapping[str, Any], path: tuple[Any, ...], w: _Where, reg: Registry, name_key: str) -> Flow:
    name = _str(doc.get(name_key), (*path, name_key), w)
    kind = doc.get("type", "linear")
    if kind not in ("linear", "unordered", "graph"):
        raise w.error((*path, "type"), f"must be linear, unordered or graph, not {kind!r}")
    items = [
        _item(it, (*path, "items", i), w, reg)
        for i, it in enumerate(_list(doc.get("items"), (*path, "items"), w))
    ]
    outputs = doc.get("outputs")
    if outputs is not None:
        outputs = [
            _str(o, (*path, "outputs", i), w) for i, o in enumerate(_list(outputs, (*path, "outputs"), w))
        ]
    version = str(doc.get("version", "1"))
    build: Callable[..., Flow]
    try:
        if kind == "graph":
            edges = [
                _edge(e, (*path, "edges", i), w)
                for i, e in enumerate(_list(doc.get("edges", []), (*path, "edges"), w))
            ]
            return flow_dsl.graph(name, *items, edges=edges, outputs=outputs, version=version)
        if "edges" in doc:
            raise w.error((*path, "edges"), f"only a graph flow has edges (this one is {kind})")
        build = flow_dsl.linear if kind == "linear" else flow_dsl.unordered
        return build(name, *items, outputs=outputs, version=version)
    except FlowDefinitionError as e:
        if str(e).startswith(w.source):
            raise
        raise w.error(path, str(e)) from None


def _item(raw: Any, path: tuple[Any, ...], w: _Where, reg: Registry) -> Any:
    if not isinstance(raw, Mapping):
        raise w.error(path, "an item is {task: NAME, ...}, {flow: {...}} or {map: {...}}")
    kinds = [k for k in ("task", "flow", "map") if k in raw]
    if len(kinds) != 1:
        raise w.error(path, "an item has exactly one of task, flow or map")
    if kinds[0] == "flow":
        _mapping(raw, path, w, ("flow",))
        sub = _mapping(raw["flow"], (*path, "flow"), w, _FLOW_KEYS)
        return _flow(sub, (*path, "flow"), w, reg, "name" if "name" in sub else "flow")
    if kinds[0] == "map":
        _mapping(raw, path, w, ("map",))
        m = _mapping(raw["map"], (*path, "map"), w, _MAP_KEYS)
        task = _task(m.get("task"), (*path, "map", "task"), w, reg)
        try:
            return flow_dsl.map(
                task,
                _str(m.get("over"), (*path, "map", "over"), w),
                into=m.get("into"),
                provides=m.get("provides"),
                name=m.get("name"),
                limit=m.get("limit", 16),
            )
        except FlowDefinitionError as e:
            raise w.error((*path, "map"), str(e)) from None
    spec = _mapping(raw, path, w, _TASK_KEYS)
    node = _task(spec.get("task"), (*path, "task"), w, reg)
    changes: dict[str, Any] = {}
    for key in ("rebind", "provides", "requires", "queue", "timeout", "join"):
        if key in spec:
            changes[key] = spec[key]
    if "retry" in spec:
        changes["retry"] = _retry(spec["retry"], (*path, "retry"), w)
    if not changes and "name" not in spec:
        return node
    try:
        return node.bind(spec.get("name"), **changes)
    except (FlowDefinitionError, TypeError, ValueError) as e:
        raise w.error(path, str(e)) from None


def _task(name: Any, path: tuple[Any, ...], w: _Where, reg: Registry) -> TaskNode:
    n = _str(name, path, w)
    try:
        return reg.get(n).node()
    except FlowDefinitionError as e:
        raise w.error(path, f"{e} ({w.hint})") from None


def _retry(raw: Any, path: tuple[Any, ...], w: _Where) -> Retry | int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    r = _mapping(raw, path, w, _RETRY_KEYS)
    try:
        kwargs: dict[str, Any] = {k: (tuple(v) if k == "on" else v) for k, v in r.items()}
        return Retry(**kwargs)
    except (FlowDefinitionError, TypeError, ValueError) as e:
        raise w.error(path, str(e)) from None


def _edge(raw: Any, path: tuple[Any, ...], w: _Where) -> tuple[Any, ...]:
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw):
        return (raw[0], raw[1])
    e = _mapping(raw, path, w, ("from", "to", "when"))
    a, b = _str(e.get("from"), (*path, "from"), w), _str(e.get("to"), (*path, "to"), w)
    if "when" not in e:
        return (a, b)
    c = _mapping(e["when"], (*path, "when"), w, ("value", "op", "arg"))
    try:
        return (
            a,
            b,
            when(_str(c.get("value"), (*path, "when", "value"), w), c.get("op", "truthy"), c.get("arg")),
        )
    except FlowDefinitionError as err:
        raise w.error((*path, "when"), str(err)) from None


def _mapping(raw: Any, path: tuple[Any, ...], w: _Where, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise w.error(path, f"must be a mapping, not {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(allowed)})"
            raise w.error((*path, key), f"unknown key {key!r}{hint}")
    return raw


def _list(raw: Any, path: tuple[Any, ...], w: _Where) -> list[Any]:
    if not isinstance(raw, list) or (path[-1] == "items" and not raw):
        raise w.error(path, "must be a non-empty list" if path[-1] == "items" else "must be a list")
    return raw


def _str(raw: Any, path: tuple[Any, ...], w: _Where) -> str:
    if not isinstance(raw, str) or not raw:
        raise w.error(
            path, f"must be a name (a string), not {json.dumps(raw) if raw is not None else 'missing'}"
        )
    return raw
