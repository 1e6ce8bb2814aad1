"""A compiled flow as plain data: what a run stores and what engines decide on.

`FlowSpec` and its `TaskSpec`s are built by `runner.define.compile` from a flow, stored with
the run at submit (msgpack-ready through `to_data`/`from_data`), and never change after:
engines never import user code. `validate_inputs` checks a run's inputs against a spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.define.input_types import EACH, KINDS, check_inputs
from runner.errors import MissingInputError

END = "$end"  # the virtual join over a flow's sinks: when it fires, the run is done


def item_input(name: str) -> str:
    """The data name holding a map element's input (element ``name`` of the map's node)."""
    return f"{name}@in"


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
    # its revert handler takes ``failure``: it is also called when the task itself failed
    revert_failure: bool = False
    join: int = 0  # predecessors that must succeed first: 0 = all
    when: dict[str, dict[str, Any]] = field(default_factory=dict)  # successor -> condition
    map: dict[str, Any] | None = None  # a map node: {"param", "limit"}; its elements get args[param][i]
    scope: str = ""  # the innermost flow with a retry controller that holds it (FlowSpec.scopes)

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
            **({"revert_failure": True} if self.revert_failure else {}),  # older specs: absent
            "join": self.join,
            "when": self.when,
            "map": self.map,
            **({"scope": self.scope} if self.scope else {}),  # older specs: absent
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
            revert_failure=bool(d.get("revert_failure", False)),
            join=int(d.get("join", 0)),
            when=dict(d.get("when") or {}),
            map=d.get("map"),
            scope=str(d.get("scope") or ""),
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
            revert=self.revert,  # the map's handler, called per element
            revert_failure=self.revert_failure,
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
    input_kinds: dict[str, list[list[str]]] = field(default_factory=dict)
    """input name -> [(task, parameter, kind)]: the simple types its values must have
    (`runner.define.input_types`; checked at submit, never by engines)"""
    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """flow name -> its retry scope: {"controller" (`runner.define.scopes` as data), "members",
    "entries", "parent" (the enclosing scope, "" for none)}"""

    @property
    def sinks(self) -> list[str]:
        return [n for n, t in self.tasks.items() if END in t.succs]

    @property
    def reverts(self) -> int:
        """How many tasks (map nodes included) have a revert handler."""
        return sum(1 for t in self.tasks.values() if t.revert)

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "tasks": {n: t.to_data() for n, t in self.tasks.items()},
            "inputs": self.inputs,
            "optional_inputs": self.optional_inputs,
            "outputs": self.outputs,
            "input_kinds": self.input_kinds,
            **({"scopes": self.scopes} if self.scopes else {}),
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
            input_kinds={
                str(name): [[str(x) for x in entry] for entry in entries if _valid_kind(entry)]
                for name, entries in dict(d.get("input_kinds") or {}).items()
            },
            scopes={str(n): dict(sc) for n, sc in dict(d.get("scopes") or {}).items()},
        )


def dependency_order(tasks: Mapping[str, TaskSpec]) -> list[str]:
    """The tasks' names, each after all its predecessors (ties: flow order, then name)."""
    indeg = {n: sum(1 for p in t.preds if p in tasks) for n, t in tasks.items()}
    ready = sorted(n for n, k in indeg.items() if k == 0)
    out: list[str] = []
    while ready:
        n = ready.pop(0)
        out.append(n)
        for s in tasks[n].succs:
            if s in indeg:
                indeg[s] -= 1
                if indeg[s] == 0:
                    ready.append(s)
    return out + sorted(set(tasks) - set(out))  # a cycle (never compiled) keeps its tasks


def input_names(tasks: Mapping[str, TaskSpec]) -> list[str]:
    """The data names the tasks read that none of them provides: the run's inputs."""
    provided = {p for t in tasks.values() for p in t.provides}
    wanted = {d for t in tasks.values() for d in [*t.args.values(), *t.optional.values()]}
    return sorted(wanted - provided)


def _valid_kind(entry: Any) -> bool:
    if not isinstance(entry, list | tuple) or len(entry) != 3:
        return False
    kind = str(entry[2])
    return kind.removeprefix(EACH) in KINDS


def validate_inputs(spec: FlowSpec, inputs: Mapping[str, Any]) -> None:
    """Raise `UnknownInputError` for an input no task takes, `MissingInputError` naming the
    first task whose required input is missing, `InputTypeError` for a value that does not
    fit a task parameter's type hint."""
    check_inputs(inputs, [*spec.inputs, *spec.optional_inputs], {})
    missing = [n for n in spec.inputs if n not in inputs]
    for tname, t in spec.tasks.items():
        for data_name in t.args.values():
            if data_name in missing:
                raise MissingInputError(tname, data_name)
    if missing:
        raise MissingInputError("?", missing[0])  # pragma: no cover - inputs come from tasks
    check_inputs(inputs, [*spec.inputs, *spec.optional_inputs], spec.input_kinds)
