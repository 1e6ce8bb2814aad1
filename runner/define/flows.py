"""Flows: linear, unordered and graph patterns, nestable, compiled to a plain-data spec.

The patterns follow TaskFlow's: a *linear* flow runs its items in order, an *unordered*
flow runs them in any order (in parallel), a *graph* flow orders them by data dependencies
(requires/provides) plus explicit edges. Items are tasks or other flows. Everything is
checked when the flow is compiled, before anything is enqueued: cycles, duplicate names,
unknown tasks, ambiguous providers; `validate_inputs` checks a run's inputs.

The compiled spec is what a run stores: engines never import user code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runner.define.conditions import When
from runner.define.conditions import when as when  # re-exported: flow.when(...)
from runner.define.tasks import REGISTRY, Registry, TaskDef, TaskNode, check_name, revert_name
from runner.errors import CycleError, DuplicateTaskError, FlowDefinitionError, MissingInputError

Item = "Flow | TaskDef | TaskNode | str"
END = "$end"  # the virtual join over a flow's sinks: when it fires, the run is done


def item_input(name: str) -> str:
    """The data name holding a map element's input (element ``name`` of the map's node)."""
    return f"{name}@in"


@dataclass
class Flow:
    """A named, versioned pattern of tasks and nested flows."""

    name: str
    kind: str  # "linear" | "unordered" | "graph"
    items: list[Any] = field(default_factory=list)
    edges: list[tuple[Any, ...]] = field(default_factory=list)  # (before, after[, When])
    outputs: tuple[str, ...] | None = None
    version: str = "1"

    def add(self, *items: Any) -> Flow:
        self.items.extend(items)
        return self

    def link(self, before: str, after: str, when: When | None = None) -> Flow:
        """Graph flows: run the item named ``after`` only once ``before`` has succeeded —
        and, with ``when`` (see `runner.define.conditions.when`), only if the condition holds then."""
        if self.kind != "graph":
            raise FlowDefinitionError(f"flow {self.name!r} is {self.kind}; only graph flows take edges")
        self.edges.append((before, after) if when is None else (before, after, when))
        return self

    def compile(self, registry: Registry | None = None) -> FlowSpec:
        return compile_flow(self, registry)


def linear(name: str, *items: Any, outputs: Iterable[str] | None = None, version: str = "1") -> Flow:
    """Items run one after another."""
    return Flow(check_name("flow", name), "linear", list(items), [], _outs(outputs), version)


def unordered(name: str, *items: Any, outputs: Iterable[str] | None = None, version: str = "1") -> Flow:
    """Items run in any order, in parallel; none may depend on another's output."""
    return Flow(check_name("flow", name), "unordered", list(items), [], _outs(outputs), version)


def graph(
    name: str,
    *items: Any,
    edges: Iterable[tuple[Any, ...]] = (),
    outputs: Iterable[str] | None = None,
    version: str = "1",
) -> Flow:
    """Items ordered by data dependencies (requires/provides) plus explicit ``edges``:
    ``(before, after)`` or ``(before, after, when(...))`` for a conditional edge."""
    return Flow(check_name("flow", name), "graph", list(items), list(edges), _outs(outputs), version)


def _outs(outputs: Iterable[str] | None) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    if isinstance(outputs, str):
        outputs = [outputs]
    return tuple(check_name("output", o) for o in outputs)


@dataclass(frozen=True)
class TaskSpec:
    """A task in a compiled flow: what to call, with which data, and its neighbours."""

    fn: str
    args: dict[str, str]
    optional: dict[str, str]
    provides: list[str]
    unpack: bool
    queue: str
    preds: list[str]
    succs: list[str]  # END for a sink
    retry: dict[str, Any] | None = None  # runner.define.retry.Retry as data
    timeout_s: float = 0.0
    revert: str = ""  # the registry name of its revert handler, if it has one
    join: int = 0  # predecessors that must succeed first: 0 = all
    when: dict[str, dict[str, Any]] = field(default_factory=dict)  # successor -> condition
    map: dict[str, Any] | None = None  # a map node: {"param", "limit"}; its elements get args[param][i]

    @property
    def needs(self) -> int:
        """How many predecessors' completions make this task ready."""
        return min(self.join, len(self.preds)) if self.join else len(self.preds)

    def to_data(self) -> dict[str, Any]:
        return {
            "fn": self.fn,
            "args": self.args,
            "optional": self.optional,
            "provides": self.provides,
            "unpack": self.unpack,
            "queue": self.queue,
            "preds": self.preds,
            "succs": self.succs,
            "retry": self.retry,
            "timeout_s": self.timeout_s,
            "revert": self.revert,
            "join": self.join,
            "when": self.when,
            "map": self.map,
        }

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> TaskSpec:
        return cls(
            fn=d["fn"],
            args=dict(d["args"]),
            optional=dict(d["optional"]),
            provides=list(d["provides"]),
            unpack=bool(d["unpack"]),
            queue=d["queue"],
            preds=list(d["preds"]),
            succs=list(d["succs"]),
            retry=d.get("retry"),
            timeout_s=float(d.get("timeout_s", 0.0)),
            revert=d.get("revert", ""),
            join=int(d.get("join", 0)),
            when=dict(d.get("when") or {}),
            map=d.get("map"),
        )

    def item(self, name: str) -> TaskSpec:
        """The spec of one element ``name`` of this map node: the task applied to one item."""
        assert self.map is not None
        return TaskSpec(
            fn=self.fn,
            args={**self.args, self.map["param"]: item_input(name)},
            optional=self.optional,
            provides=[name],
            unpack=False,
            queue=self.queue,
            preds=[],
            succs=[],
            retry=self.retry,
            timeout_s=self.timeout_s,
        )


@dataclass(frozen=True)
class FlowSpec:
    """A compiled flow: plain data, stored with each run."""

    name: str
    version: str
    tasks: dict[str, TaskSpec]
    inputs: list[str]  # names the run must be given
    optional_inputs: list[str]  # names a task can take from the inputs but has a default for
    outputs: list[str]  # the names of the run's result

    @property
    def sinks(self) -> list[str]:
        return [n for n, t in self.tasks.items() if END in t.succs]

    @property
    def reverts(self) -> int:
        """How many tasks have a revert handler."""
        return sum(1 for t in self.tasks.values() if t.revert)

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "tasks": {n: t.to_data() for n, t in self.tasks.items()},
            "inputs": self.inputs,
            "optional_inputs": self.optional_inputs,
            "outputs": self.outputs,
        }

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> FlowSpec:
        return cls(
            name=d["name"],
            version=d["version"],
            tasks={n: TaskSpec.from_data(t) for n, t in d["tasks"].items()},
            inputs=list(d["inputs"]),
            optional_inputs=list(d["optional_inputs"]),
            outputs=list(d["outputs"]),
        )


def validate_inputs(spec: FlowSpec, inputs: Mapping[str, Any]) -> None:
    """Raise `MissingInputError` naming the first task whose required input is missing."""
    missing = [n for n in spec.inputs if n not in inputs]
    if not missing:
        return
    for tname, t in spec.tasks.items():
        for data_name in t.args.values():
            if data_name in missing:
                raise MissingInputError(tname, data_name)
    raise MissingInputError("?", missing[0])  # pragma: no cover - inputs come from tasks


# --- compilation -----------------------------------------------------------------------


class _Compiler:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.nodes: dict[str, TaskNode] = {}
        self.edges: set[tuple[str, str]] = set()
        self.conds: dict[tuple[str, str], When] = {}
        self.flow_names: set[str] = set()

    def node(self, item: Any) -> TaskNode:
        if isinstance(item, TaskNode):
            n = item
        elif isinstance(item, TaskDef):
            n = item.node()
        elif isinstance(item, str):
            n = self.registry.get(item).node()
        else:
            raise FlowDefinitionError(
                f"a flow item must be a task, a flow or a registered task name, not {type(item).__name__}"
            )
        if n.task not in self.registry:
            self.registry.get(n.task)  # raises UnknownTaskError
        if n.name in self.nodes:
            raise DuplicateTaskError(n.name)
        if n.name in self.flow_names:
            raise FlowDefinitionError(f"the name {n.name!r} is used by a task and by a flow; rename one")
        self.nodes[n.name] = n
        return n

    def visit(self, item: Any) -> tuple[set[str], set[str], set[str]]:
        """Add an item's tasks and internal edges; return (all tasks, entries, exits)."""
        if not isinstance(item, Flow):
            n = self.node(item)
            return {n.name}, {n.name}, {n.name}
        flow = item
        if flow.name in self.flow_names or flow.name in self.nodes:
            raise FlowDefinitionError(
                f"the name {flow.name!r} is used by a nested flow and by another flow or task; rename one"
            )
        self.flow_names.add(flow.name)
        if not flow.items:
            raise FlowDefinitionError(f"flow {flow.name!r} has no tasks")
        parts = [(_item_name(i), *self.visit(i)) for i in flow.items]
        if flow.kind == "linear":
            for (_, _, _, exits), (_, _, entries, _) in zip(parts, parts[1:], strict=False):
                self.edges.update((a, b) for a in exits for b in entries)
            return set().union(*(p[1] for p in parts)), parts[0][2], parts[-1][3]
        provided = {p: name for name, tasks, _, _ in parts for t in tasks for p in self.nodes[t].provides}
        item_edges: set[tuple[str, str]] = set()
        for name, tasks, _, _ in parts:
            for t in tasks:
                for data_name in _data_needs(self.nodes[t]):
                    src = provided.get(data_name)
                    if src is not None and src != name:
                        item_edges.add((src, name))
        if flow.kind == "unordered" and item_edges:
            a, b = sorted(item_edges)[0]
            raise FlowDefinitionError(
                f"unordered flow {flow.name!r}: {b!r} needs a value that its sibling {a!r} "
                "provides; use a linear or graph flow"
            )
        by_name = {p[0]: p for p in parts}
        for edge in flow.edges:
            if len(edge) not in (2, 3) or (len(edge) == 3 and not isinstance(edge[2], When)):
                raise FlowDefinitionError(
                    f"graph flow {flow.name!r}: an edge is (before, after) or (before, after, when(...)), "
                    f"not {edge!r}"
                )
            a, b = edge[0], edge[1]
            if len(edge) == 3:
                for x in by_name.get(a, (None,) * 4)[3] or ():
                    for y in by_name.get(b, (None,) * 4)[2] or ():
                        self.conds[(x, y)] = edge[2]
            for end in (a, b):
                if end not in by_name:
                    raise FlowDefinitionError(
                        f"graph flow {flow.name!r}: edge {a!r} -> {b!r} names {end!r}, "
                        f"which is not one of its items ({', '.join(sorted(by_name))})"
                    )
            item_edges.add((a, b))
        for a, b in item_edges:
            self.edges.update((x, y) for x in by_name[a][3] for y in by_name[b][2])
        has_in = {b for _, b in item_edges}
        has_out = {a for a, _ in item_edges}
        entries = set().union(*(p[2] for p in parts if p[0] not in has_in))
        exits = set().union(*(p[3] for p in parts if p[0] not in has_out))
        return set().union(*(p[1] for p in parts)), entries, exits


def _ancestors(name: str, preds: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(preds[name])
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(preds[p])
    return seen


def _item_name(item: Any) -> str:
    if isinstance(item, Flow):
        return item.name
    if isinstance(item, (TaskDef, TaskNode)):
        return item.name
    return str(item)


def _data_needs(n: TaskNode) -> list[str]:
    return list(n.args.values()) + list(n.optional.values())


def _find_cycle(names: list[str], succs: dict[str, list[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(names, white)
    for start in names:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path = [start]
        color[start] = grey
        while stack:
            node, i = stack[-1]
            if i < len(succs[node]):
                stack[-1] = (node, i + 1)
                nxt = succs[node][i]
                if color[nxt] == grey:
                    return path[path.index(nxt) :] + [nxt]
                if color[nxt] == white:
                    color[nxt] = grey
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None


def compile_flow(flow: Flow, registry: Registry | None = None) -> FlowSpec:
    """Flatten a (nested) flow into one DAG and check it; raises `FlowDefinitionError`."""
    if not isinstance(flow, Flow):
        raise FlowDefinitionError(f"expected a flow, got {type(flow).__name__}")
    c = _Compiler(registry or REGISTRY)
    c.visit(flow)
    providers: dict[str, str] = {}
    for name, n in c.nodes.items():
        for p in n.provides:
            if p in providers:
                raise FlowDefinitionError(
                    f"tasks {providers[p]!r} and {name!r} both provide {p!r}; rename one with provides=..."
                )
            providers[p] = name
    edges = set(c.edges)
    inputs: set[str] = set()
    optional_inputs: set[str] = set()
    for name, n in c.nodes.items():
        for data_name in n.args.values():
            if data_name in providers:
                edges.add((providers[data_name], name))
            else:
                inputs.add(data_name)
        for data_name in n.optional.values():
            if data_name in providers:
                edges.add((providers[data_name], name))
            else:
                optional_inputs.add(data_name)
    for a, b in edges:
        if a == b:
            raise CycleError([a, a])
    names = list(c.nodes)
    succs: dict[str, list[str]] = {n: [] for n in names}
    preds: dict[str, list[str]] = {n: [] for n in names}
    for a, b in sorted(edges):
        succs[a].append(b)
        preds[b].append(a)
    cycle = _find_cycle(names, succs)
    if cycle:
        raise CycleError(cycle)
    for (a, b), cond in c.conds.items():
        src = providers.get(cond.value)
        if src is None and cond.value not in inputs and cond.value not in optional_inputs:
            raise FlowDefinitionError(
                f"edge {a!r} -> {b!r}: condition on {cond.value!r}, which no task provides"
            )
        if src is not None and src != a and src not in _ancestors(a, preds):
            raise FlowDefinitionError(
                f"edge {a!r} -> {b!r}: condition on {cond.value!r}, which {src!r} provides, "
                f"but {src!r} does not run before {a!r}"
            )
    tasks = {}
    for name, n in c.nodes.items():
        if n.join > 1 and n.join > len(preds[name]):
            raise FlowDefinitionError(f"task {name!r} joins {n.join} predecessors but has {len(preds[name])}")
        tasks[name] = TaskSpec(
            fn=n.task,
            args=dict(n.args),
            optional=dict(n.optional),
            provides=list(n.provides),
            unpack=n.unpack,
            queue=n.queue,
            preds=preds[name],
            succs=succs[name] or [END],
            retry=n.retry.to_data() if n.retry else None,
            timeout_s=n.timeout_s,
            revert=revert_name(n.task) if revert_name(n.task) in c.registry and not n.map_param else "",
            join=n.join,
            when={b: cond.to_data() for (a, b), cond in sorted(c.conds.items()) if a == name},
            map={"param": n.map_param, "limit": n.map_limit} if n.map_param else None,
        )
    sinks = [n for n in names if not succs[n]]
    if flow.outputs is None:
        outputs = [p for s in sinks for p in c.nodes[s].provides]
    else:
        outputs = list(flow.outputs)
        for o in outputs:
            if o not in providers and o not in inputs and o not in optional_inputs:
                raise FlowDefinitionError(f"flow {flow.name!r}: output {o!r} is provided by no task")
    return FlowSpec(
        name=flow.name,
        version=str(flow.version),
        tasks=tasks,
        inputs=sorted(inputs),
        optional_inputs=sorted(optional_inputs - inputs),
        outputs=outputs,
    )


def map_items(
    item: TaskDef | TaskNode,
    over: str,
    *,
    into: str | None = None,
    provides: str | None = None,
    name: str | None = None,
    limit: int = 16,
) -> TaskNode:
    """Apply a task to each element of the list named ``over`` (with-items).

    Each element runs as its own task (own attempts, retries, timeout) with its parameter
    ``into`` (default: the task's only required parameter) set to the element; at most
    ``limit`` run at once (0: all). The results, in input order, are provided as one list
    under ``provides`` (default: what the task provides).
    """
    node = item.node() if isinstance(item, TaskDef) else item
    if not isinstance(node, TaskNode):
        raise FlowDefinitionError(f"map() takes a task, not {type(item).__name__}")
    if into is None:
        if len(node.args) != 1:
            raise FlowDefinitionError(
                f"map over {over!r}: task {node.name!r} takes {sorted(node.args) or 'no'} required "
                "parameters; say which one takes each element with into="
            )
        into = next(iter(node.args))
    if into not in node.args:
        raise FlowDefinitionError(f"map over {over!r}: task {node.name!r} has no required parameter {into!r}")
    out = provides or (node.provides[0] if len(node.provides) == 1 else None)
    if out is None:
        raise FlowDefinitionError(f"map over {over!r}: name the list of results with provides=")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise FlowDefinitionError(f"map limit must be a number >= 0, not {limit!r}")
    return replace(
        node,
        name=check_name("task", name or node.name),
        args={**node.args, into: check_name("value", over)},
        provides=(check_name("provided value", out),),
        unpack=False,
        map_param=into,
        map_limit=limit,
    )


map = map_items  # noqa: A001 - flow.map(...), as in TaskFlow and Mistral's with-items
