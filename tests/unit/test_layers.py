"""Imports go one way (DESIGN §2): read every import of every module in runner/ and workers/,
function-level and TYPE_CHECKING ones included, and check the rules that hold today, so that
a new import breaking one fails here instead of in review.

The units of the cycle check are runner's top-level modules and packages (``runner.store.redis``
counts as ``store``). One rule is for the tests themselves: they share code through
tests/helpers/ only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each room may import of runner: the shared leaves and itself. The adapter rooms:
# nothing of the engine, client, operator surfaces or decisions, and not each other. The
# define room (what users write): nothing with I/O or decisions, so importing a flow module
# connects to nothing. The protocol: only the error root.
ROOM_MAY_IMPORT = {
    "broker": {"broker", "errors", "config", "protocol"},
    "store": {"store", "errors", "config", "protocol", "states"},  # states: the run statuses it indexes
    "define": {"define", "errors", "config", "protocol", "states"},
    "protocol": {"protocol", "errors"},
}

# The worker's own modules (not its CLI, which builds the adapters the command runs with):
# the runner units they may import. Contracts, never a concrete store or broker, and nothing
# of the operator surfaces.
WORKER_MODULES = (
    "workers/loop.py",
    "workers/leases.py",
    "workers/execute.py",
    "workers/skip.py",
    "workers/presence.py",
)
ADAPTERS = [
    ["store", "redis"],
    ["store", "redis_cluster"],
    ["store", "memory"],
    ["broker", "kombu"],
    ["broker", "local"],
]
WORKER_MAY_NOT_IMPORT = {"ops", "engine", "client", "local", "connect"}
# The completion token's format is shared: the worker mints a task's token, the client's
# completion path checks it. The worker may import that module of the client room, no other.
WORKER_MAY_IMPORT_OF_CLIENT = ("runner.client.tokens",)


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    target: str  # the absolute dotted name imported (a module, or a name in a module)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterable[Import]:
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            for alias in node.names:
                yield Import(path, node.lineno, f"{mod}.{alias.name}" if alias.name != "*" else mod)


def sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def all_imports() -> list[Import]:
    return [imp for p in sources("runner", "workers") for imp in imports_of(p)]


def unit_of_module(dotted: str) -> str | None:
    """The top-level unit of a runner module or name, or None if not runner's. A name
    imported from the package itself (``from runner import task``) is the unit ``runner``."""
    parts = dotted.split(".")
    if parts[0] != "runner":
        return None
    if len(parts) == 1:
        return "runner"
    top = parts[1]
    if (ROOT / "runner" / f"{top}.py").exists() or (ROOT / "runner" / top).is_dir():
        return top
    return "runner"  # a name defined in runner/__init__.py


def unit_of_file(path: Path) -> str | None:
    rel = path.relative_to(ROOT).parts
    if rel[0] != "runner":
        return None
    if len(rel) == 2 and rel[1] == "__init__.py":
        return "runner"
    return rel[1].removesuffix(".py")


def where(imp: Import) -> str:
    return f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"


def test_runner_never_imports_workers() -> None:
    bad = [where(i) for i in all_imports() if unit_of_file(i.path) and i.target.split(".")[0] == "workers"]
    assert not bad, bad


# The RabbitMQ adapter is kombu.py plus the parts split off it (kombu_*.py); each is listed,
# so a new module importing kombu is a decision made here, not an accident.
KOMBU_ADAPTER = {
    "runner/broker/kombu.py",
    "runner/broker/kombu_admin.py",
    "runner/broker/kombu_errors.py",
    "runner/broker/kombu_publish.py",
    "runner/broker/kombu_topology.py",
    "runner/broker/kombu_wire.py",
}


@pytest.mark.parametrize(
    ("library", "only"),
    [
        ({"kombu", "amqp"}, KOMBU_ADAPTER),
        (
            {"redis"},
            {
                "runner/store/redis.py",
                "runner/store/redis_cluster.py",
                "runner/store/redis_errors.py",
                "runner/store/redis_flows.py",
                "runner/store/redis_fleet.py",
                "runner/store/redis_commit.py",
                "runner/store/redis_listings.py",
                "runner/store/redis_replicas.py",
                "runner/store/redis_schedules.py",
                "runner/store/redis_watch.py",
            },
        ),
    ],
)
def test_only_the_adapter_imports_its_client_library(library: set[str], only: set[str]) -> None:
    bad = [
        where(i)
        for i in all_imports()
        if i.target.split(".")[0] in library and i.path.relative_to(ROOT).as_posix() not in only
    ]
    assert not bad, bad


def test_only_the_kombu_adapter_imports_its_split_off_parts() -> None:
    """kombu_admin and kombu_errors are the adapter's insides: nothing else imports them."""
    bad = [
        where(i)
        for i in all_imports()
        if i.target.startswith(
            (
                "runner.broker.kombu_admin",
                "runner.broker.kombu_errors",
                "runner.broker.kombu_publish",
                "runner.broker.kombu_topology",
            )
        )
        and i.path.relative_to(ROOT).as_posix() not in KOMBU_ADAPTER
    ]
    assert not bad, bad


@pytest.mark.parametrize("room", sorted(ROOM_MAY_IMPORT))
def test_rooms_import_only_what_their_rule_allows(room: str) -> None:
    bad = []
    files = (
        sources(f"runner/{room}") if (ROOT / "runner" / room).is_dir() else [ROOT / "runner" / f"{room}.py"]
    )
    for p in files:
        for i in imports_of(p):
            unit = unit_of_module(i.target)
            if unit is not None and unit not in ROOM_MAY_IMPORT[room]:
                bad.append(where(i))
            if i.target.split(".")[0] == "workers":
                bad.append(where(i))
    assert not bad, bad


def test_no_deprecated_alias_is_left_in_the_tree() -> None:
    """The old paths live in one table (runner/moved.py), not as folders or files of their own."""
    from runner.moved import MOVED

    for old in MOVED:
        path = ROOT.joinpath(*old.split("."))
        assert not path.with_suffix(".py").exists() and not path.is_dir(), old


@pytest.mark.parametrize("module", WORKER_MODULES)
def test_worker_modules_import_contracts_not_adapters_or_surfaces(module: str) -> None:
    bad = []
    for i in imports_of(ROOT / module):
        unit = unit_of_module(i.target)
        if unit in WORKER_MAY_NOT_IMPORT and not i.target.startswith(WORKER_MAY_IMPORT_OF_CLIENT):
            bad.append(where(i))
        parts = i.target.split(".")
        if parts[1:3] in ADAPTERS:
            bad.append(where(i))
        if i.target.split(".")[0] in {"kombu", "amqp", "redis"}:
            bad.append(where(i))
    assert not bad, bad


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in all_imports():
        src = unit_of_file(i.path)
        dst = unit_of_module(i.target)
        if src is None or dst is None:
            continue
        graph.setdefault(src, set())
        graph.setdefault(dst, set())
        if src != dst:
            graph[src].add(dst)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm: the groups of units that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            out.append(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    graph = unit_graph()
    cycles = [sorted(g) for g in strongly_connected(graph) if len(g) > 1]
    assert not cycles, f"import cycles between runner's units: {cycles}"


def test_no_import_cycles_between_modules() -> None:
    """Nor between two modules of one unit (``client.client`` and ``client.completion`` were
    one, ``define.flows`` and ``define.compile`` another); a package is its ``__init__``."""
    graph: dict[str, set[str]] = {}
    for i in all_imports():
        src, dst = module_name(i.path), _module_of(i.target)
        if not dst.startswith(("runner", "workers")) or dst == src:
            continue
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    cycles = [sorted(g) for g in strongly_connected(graph) if len(g) > 1]
    assert not cycles, f"import cycles between modules: {cycles}"


def test_the_cycle_check_sees_a_cycle() -> None:
    """The check above is only as good as Tarjan's algorithm here: a known cycle is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [g for g in strongly_connected(graph) if len(g) > 1] == [frozenset({"a", "b", "c"})]


def test_the_reader_sees_function_level_imports() -> None:
    """The checks above are only as good as the import reader: it must see imports inside
    functions and under TYPE_CHECKING, and resolve relative ones."""
    src = ROOT / "runner" / "connect.py"
    targets = {i.target for i in imports_of(src)}
    assert "runner.broker.kombu.KombuBroker" in targets  # inside open_broker and TYPE_CHECKING


def test_the_public_api_and_the_old_paths_still_import() -> None:
    """The moves keep what users import (issue 13): the package's names, runner.lazy and
    runner.local at their paths, and each old path resolving — with a DeprecationWarning that
    names the new one — to the very module at its new home."""
    import importlib
    import sys

    import runner
    from runner import flow
    from runner.define import flows, lazy, tasks
    from runner.lazy import Deferred, defer
    from runner.moved import MOVED

    assert {"Client", "Retry", "current_task", "flow", "task"} <= set(runner.__all__)
    assert flow is flows and runner.task is tasks.task
    assert flow.when is flows.when and flow.linear is flows.linear
    assert (defer, Deferred) == (lazy.defer, lazy.Deferred)
    importlib.import_module("runner.local")
    for old, new in MOVED.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import {new}\b"):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
    old_tasks = sys.modules["runner.tasks"]
    assert old_tasks.REGISTRY is tasks.REGISTRY


# The decision core does no I/O: of the store and the broker it sees only their contracts
# (the `Commit` it returns, the field names it writes, the queue names it routes to).
DECIDE_MAY_NOT_IMPORT = {
    "engine", "client", "ops", "local", "connect", "examples",
}  # fmt: skip
CONTRACTS = {"runner.store", "runner.store.base", "runner.store.keys", "runner.broker.base"}


def _module_of(target: str) -> str:
    """The module part of an imported dotted name (``runner.store.keys`` for a name in it)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        mod = ROOT.joinpath(*parts[:n])
        if mod.with_suffix(".py").exists() or (mod / "__init__.py").exists():
            return ".".join(parts[:n])
    return target


def test_decide_does_no_io() -> None:
    bad = []
    for p in sources("runner/decide"):
        for i in imports_of(p):
            top = i.target.split(".")[0]
            unit = unit_of_module(i.target)
            if top in {"kombu", "amqp", "redis", "workers"} or unit in DECIDE_MAY_NOT_IMPORT:
                bad.append(where(i))
            elif unit in {"store", "broker"} and _module_of(i.target) not in CONTRACTS:
                bad.append(where(i))  # an adapter (redis, memory, kombu, local)
    assert not bad, bad


def test_the_engine_imports_no_operator_surface() -> None:
    ops = {"client", "ops", "local", "examples"}
    bad = []
    for p in sources("runner/engine"):
        for i in imports_of(p):
            unit = unit_of_module(i.target)
            if unit in ops or i.target.split(".")[0] in {"kombu", "amqp", "redis", "workers"}:
                bad.append(where(i))
            elif unit in {"store", "broker"} and _module_of(i.target) not in {*CONTRACTS, "runner.broker"}:
                bad.append(where(i))
    assert not bad, bad


CONCRETE_ADAPTERS = (
    "runner.store.redis",
    "runner.store.memory",
    "runner.broker.kombu",
    "runner.broker.local",
)


def test_operator_surfaces_never_import_a_concrete_adapter() -> None:
    """ops/ (CLI, HTTP, dashboard, bench) gets its store and broker from `runner.connect` and
    talks to them through their contracts (`DeadLetters`, `QueueInfo`), never an adapter."""
    bad = [
        where(i)
        for p in sources("runner/ops")
        for i in imports_of(p)
        if i.target.startswith(CONCRETE_ADAPTERS) or i.target.split(".")[0] in {"kombu", "amqp", "redis"}
    ]
    assert not bad, bad


def test_only_the_operator_surfaces_import_them() -> None:
    """ops/ is the top: nothing in runner/ below it imports it (the worker's CLI command may use
    the CLI's shared helpers; ``python -m runner`` starts the CLI, and is nobody's import)."""
    bad = [
        where(i)
        for p in sources("runner")
        if "ops" not in p.relative_to(ROOT / "runner").parts[:1] and p != ROOT / "runner" / "__main__.py"
        for i in imports_of(p)
        if unit_of_module(i.target) == "ops"
    ]
    assert not bad, bad


def test_adapters_are_built_only_in_connect() -> None:
    """`runner.connect` builds every store and broker; everything else asks it for one."""
    built = {
        p.relative_to(ROOT).as_posix()
        for p in sources("runner", "workers")
        for name in ("KombuBroker(", "RedisStore(", "RedisClusterStore(", "MemoryStore(", "LocalHub(")
        if name in p.read_text().replace(f"class {name}", "")
    }
    assert built == {"runner/connect.py"}


def test_the_client_room_imports_no_engine_adapter_or_operator_surface() -> None:
    bad = []
    for p in sources("runner/client"):
        for i in imports_of(p):
            if unit_of_module(i.target) in {"engine", "ops", "local", "examples"} or i.target.startswith(
                CONCRETE_ADAPTERS
            ):
                bad.append(where(i))
    assert not bad, bad


def test_the_examples_use_only_what_a_user_would() -> None:
    """runner/examples/ is written as users write flows: the public API, local mode, lazy tasks,
    logging and the client; never the engine, the decisions, an adapter or an operator surface."""
    allowed = {"runner", "local", "lazy", "logs", "client", "examples"}
    bad = [
        where(i)
        for p in sources("runner/examples")
        for i in imports_of(p)
        if (unit_of_module(i.target) or "runner") not in allowed
        or i.target.split(".")[0] in {"kombu", "amqp", "redis", "workers"}
    ]
    assert not bad, bad


def test_no_test_module_imports_another_or_the_conftest() -> None:
    """What tests share lives in tests/helpers/ (the kit), not in a test module that others
    import, nor in conftest.py, which pytest imports on its own terms."""
    bad = [
        where(i)
        for p in sources("tests")
        for i in imports_of(p)
        if i.target.startswith("tests.conftest")
        or any(part.startswith("test_") for part in i.target.split(".")[1:3])
    ]
    assert not bad, bad
