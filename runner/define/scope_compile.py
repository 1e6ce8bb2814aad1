"""What a flow's retry scopes (`runner.define.scopes`) add to its compilation: the values
their controllers provide, the edges that make a scope a unit, each task's innermost scope.

A scope is one unit for what follows it: a task outside that needs a value from inside
waits for the whole scope (edges from its exits), so a re-run of the scope never races a
successor that already read an attempt's result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.define.scopes import PARAMETERIZED
from runner.define.tasks import TaskNode
from runner.errors import FlowDefinitionError


def scope_values(
    scopes: Mapping[str, Mapping[str, Any]], providers: Mapping[str, str], nodes: Mapping[str, TaskNode]
) -> dict[str, str]:
    """Provided value -> its scope; refuses a clash, a reader outside the scope, a map."""
    out: dict[str, str] = {}
    for name, sc in scopes.items():
        members = set(sc["members"])
        for t in sorted(members):
            if nodes[t].map_param:
                raise FlowDefinitionError(
                    f"flow {name!r}: map node {t!r} inside a flow with a retry controller is not supported"
                )
        value = sc["controller"]["provides"]
        if not value:
            continue
        if value in providers or value in out:
            other = providers.get(value) or out[value]
            raise FlowDefinitionError(
                f"the retry controller of {name!r} and {other!r} both provide {value!r}"
            )
        out[value] = name
        for t, n in nodes.items():
            if t not in members and value in [*n.args.values(), *n.optional.values()]:
                raise FlowDefinitionError(
                    f"task {t!r} takes {value!r}, which the retry controller of {name!r} provides "
                    "only to the tasks of its flow"
                )
    return out


def scope_edges(
    scopes: Mapping[str, Mapping[str, Any]], providers: Mapping[str, str], edges: set[tuple[str, str]]
) -> set[str]:
    """Add the edges that make each scope a unit (``edges`` is changed); return the run
    inputs the controllers read (a `ParameterizedForEach` over a run input)."""
    inputs: set[str] = set()
    for name, sc in scopes.items():
        ctl, members = sc["controller"], set(sc["members"])
        if ctl["kind"] != PARAMETERIZED:
            continue
        src = providers.get(ctl["rebind"])
        if src is None:
            inputs.add(ctl["rebind"])
        elif src in members:
            raise FlowDefinitionError(
                f"flow {name!r}: its controller iterates over {ctl['rebind']!r}, which its own task {src!r} provides"
            )
        else:
            edges.update((src, e) for e in sc["entries"])
    changed = True
    while changed:
        changed = False
        for sc in scopes.values():
            members = set(sc["members"])
            for a, b in sorted(edges):
                if a in members and b not in members:
                    new = {(x, b) for x in sc["exits"]} - edges
                    if new:
                        edges.update(new)
                        changed = True
    return inputs


def innermost_scopes(scopes: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Task -> the innermost scope with a controller that holds it."""

    def depth(s: str) -> int:
        return 0 if not s else 1 + depth(scopes[s]["parent"])

    out: dict[str, str] = {}
    for name in sorted(scopes, key=depth):  # outer first: inner ones overwrite
        for t in scopes[name]["members"]:
            out[t] = name
    return out
