"""Flows: linear, unordered and graph patterns, nestable, compiled to a plain-data spec.

The patterns follow TaskFlow's: a *linear* flow runs its items in order, an *unordered*
flow runs them in any order (in parallel), a *graph* flow orders them by data dependencies
(requires/provides) plus explicit edges. Items are tasks or other flows. Everything is
checked when the flow is compiled, before anything is enqueued: cycles, duplicate names,
unknown tasks, ambiguous providers; `validate_inputs` checks a run's inputs.

The `Flow` they build, and its compilation, are `runner.define.compile`'s (re-exported here);
the compiled spec (`runner.define.spec`) is what a run stores: engines never import user code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from runner.define.compile import Flow as Flow  # re-exported: the class the patterns build
from runner.define.conditions import when as when  # re-exported: flow.when(...)
from runner.define.scopes import Controller, check_controller
from runner.define.spec import END as END  # re-exported with the spec: what flow.X offered before
from runner.define.spec import FlowSpec as FlowSpec
from runner.define.spec import TaskSpec as TaskSpec
from runner.define.spec import item_input as item_input
from runner.define.spec import validate_inputs as validate_inputs
from runner.define.tasks import TaskDef, TaskNode, check_name
from runner.errors import FlowDefinitionError

Item = "Flow | TaskDef | TaskNode | str"


def linear(
    name: str,
    *items: Any,
    outputs: Iterable[str] | None = None,
    version: str = "1",
    retry: Controller | None = None,
) -> Flow:
    """Items run one after another. ``retry``: a controller (`Times`, `ForEach`,
    `ParameterizedForEach`) that reverts and re-runs the flow when one of its tasks fails."""
    flow = Flow(check_name("flow", name), "linear", list(items), [], _outs(outputs), version)
    flow.retry = check_controller(retry)
    return flow


def unordered(
    name: str,
    *items: Any,
    outputs: Iterable[str] | None = None,
    version: str = "1",
    retry: Controller | None = None,
) -> Flow:
    """Items run in any order, in parallel; none may depend on another's output."""
    flow = Flow(check_name("flow", name), "unordered", list(items), [], _outs(outputs), version)
    flow.retry = check_controller(retry)
    return flow


def graph(
    name: str,
    *items: Any,
    edges: Iterable[tuple[Any, ...]] = (),
    outputs: Iterable[str] | None = None,
    version: str = "1",
    retry: Controller | None = None,
) -> Flow:
    """Items ordered by data dependencies (requires/provides) plus explicit ``edges``:
    ``(before, after)`` or ``(before, after, when(...))`` for a conditional edge."""
    flow = Flow(check_name("flow", name), "graph", list(items), list(edges), _outs(outputs), version)
    flow.retry = check_controller(retry)
    return flow


def _outs(outputs: Iterable[str] | None) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    if isinstance(outputs, str):
        outputs = [outputs]
    return tuple(check_name("output", o) for o in outputs)


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
