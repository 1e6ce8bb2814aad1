"""A `Flow` (what `runner.define.flows`' patterns build) and its compilation into one checked
DAG, a `FlowSpec`, before anything is enqueued. Together, because each needs the other: a flow
compiles itself (``flow.compile()``), the compiler walks nested flows.

Flattens nested flows, resolves data dependencies (requires/provides) and explicit edges,
and refuses what cannot run: cycles, duplicate names, unknown tasks, ambiguous providers,
outputs nobody provides. Raises `FlowDefinitionError` (or a subclass) naming what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.define.conditions import When
from runner.define.input_types import EACH
from runner.define.scope_compile import innermost_scopes, scope_edges, scope_values
from runner.define.spec import END, FlowSpec, TaskSpec
from runner.define.tasks import REGISTRY, Registry, TaskDef, TaskNode, revert_name, takes_failure
from runner.errors import CycleError, DuplicateTaskError, FlowDefinitionError


@dataclass
class Flow:
    """A named, versioned pattern of tasks and nested flows."""

    name: str
    kind: str  # "linear" | "unordered" | "graph"
    items: list[Any] = field(default_factory=list)
    edges: list[tuple[Any, ...]] = field(default_factory=list)  # (before, after[, When])
    outputs: tuple[str, ...] | None = None
    version: str = "1"
    retry: Any = None  # a retry controller (runner.define.scopes): the flow is its scope

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
        """This flow as a checked, plain-data spec (`compile_flow`)."""
        return compile_flow(self, registry)


class _Compiler:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.nodes: dict[str, TaskNode] = {}
        self.edges: set[tuple[str, str]] = set()
        self.conds: dict[tuple[str, str], When] = {}
        self.flow_names: set[str] = set()
        self.scopes: dict[str, dict[str, Any]] = {}  # flows with a retry controller
        self.open_scopes: list[str] = []

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
        if flow.retry is not None:
            self.open_scopes.append(flow.name)
            try:
                found = self.visit_items(flow)
            finally:
                self.open_scopes.pop()
            self.scopes[flow.name] = {
                "controller": flow.retry.to_data(),
                "members": sorted(found[0]),
                "entries": sorted(found[1]),
                "exits": sorted(found[2]),
                "parent": self.open_scopes[-1] if self.open_scopes else "",
            }
            return found
        return self.visit_items(flow)

    def visit_items(self, flow: Flow) -> tuple[set[str], set[str], set[str]]:
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
    scoped = scope_values(c.scopes, providers, c.nodes)
    for name, n in c.nodes.items():
        for data_name in n.args.values():
            if data_name in providers:
                edges.add((providers[data_name], name))
            elif data_name not in scoped:
                inputs.add(data_name)
        for data_name in n.optional.values():
            if data_name in providers:
                edges.add((providers[data_name], name))
            elif data_name not in scoped:
                optional_inputs.add(data_name)
    inputs |= scope_edges(c.scopes, providers, edges)
    for a, b in edges:
        if a == b:
            raise CycleError([a, a])
    input_kinds = _input_kinds(c, {**providers, **scoped})
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
    innermost = innermost_scopes(c.scopes)
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
            revert=revert_name(n.task) if revert_name(n.task) in c.registry else "",
            revert_failure=takes_failure(c.registry, n.task),
            join=n.join,
            when={b: cond.to_data() for (a, b), cond in sorted(c.conds.items()) if a == name},
            map={"param": n.map_param, "limit": n.map_limit} if n.map_param else None,
            scope=innermost.get(name, ""),
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
        input_kinds=input_kinds,
        scopes={s: {k: v for k, v in sc.items() if k != "exits"} for s, sc in sorted(c.scopes.items())},
    )


def _input_kinds(c: _Compiler, providers: dict[str, str]) -> dict[str, list[list[str]]]:
    """Run input -> [(task, parameter, kind)] for the parameters with a simple type hint."""
    out: dict[str, list[list[str]]] = {}
    for name, n in c.nodes.items():
        kinds = c.registry.get(n.task).param_kinds()
        for param, data_name in [*n.args.items(), *n.optional.items()]:
            if data_name in providers or param not in kinds:
                continue
            kind = EACH + kinds[param] if param == n.map_param else kinds[param]
            out.setdefault(data_name, []).append([name, param, kind])
    return out
