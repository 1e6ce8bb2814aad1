"""Fuzzing flow definitions and run inputs, end to end in local mode.

Arbitrary flow shapes built with the DSL (linear, unordered and graph flows nested, maps,
conditional edges, joins, retries, rebinding, names good and bad) and arbitrary inputs
(``--input k=v`` strings included) are either refused with a `runner.errors` error (or, for
the CLI's own parsing, a usage error) before anything is enqueued, or accepted and run to a
terminal state with the outcome the shape implies: which tasks run or are skipped, what each
computes, how many times each body ran, and the run's result.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import click
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from runner import Retry, current_task, flow, task
from runner.define.conditions import holds
from runner.define.flows import Flow, FlowSpec
from runner.define.tasks import Registry, TaskNode
from runner.errors import AckflowError, RunNotFound
from runner.local import LocalRuntime
from runner.ops.cli.common import parse_inputs

pytestmark = pytest.mark.fuzz

# Each example runs a flow: a third of the profile's examples keeps `make test` to seconds
# (100 under the default profile) and `make fuzz` to thousands.
LIMIT = settings(max_examples=max(10, settings().max_examples // 3))

reg = Registry()
calls: Counter[tuple[str, str]] = Counter()  # (run id, task or "elem") -> bodies run
calls_lock = threading.Lock()


def _count(name: str) -> int:
    ctx = current_task()
    with calls_lock:
        calls[(ctx.run_id, name)] += 1
    return ctx.attempt


def _total(kw: dict[str, Any]) -> Any:
    """1 + the sum of the inputs: a list counts as its sum, a missing value (None) as 0."""
    out: Any = 1
    for v in kw.values():
        out = out + (0 if v is None else sum(v) if isinstance(v, list) else v)
    return out


@task(registry=reg)
def node(**kw: Any) -> Any:
    _count(current_task().task)
    return _total(kw)


@task(registry=reg, retry=Retry(attempts=2, delay=0))
def flaky(**kw: Any) -> Any:
    """Fails its first attempt, then computes what `node` does."""
    if _count(current_task().task) == 1:
        raise ConnectionError("first attempt fails")
    return _total(kw)


@task(registry=reg)
def boom(**kw: Any) -> Any:
    _count(current_task().task)
    raise ValueError("boom")


@task(registry=reg, provides="e")
def elem(x: Any) -> Any:
    with calls_lock:
        calls[(current_task().run_id, "elem")] += 1
    return x + 1


INPUTS = ("in0", "in1")
LIST_INPUT = "xs"
BAD_NAMES = ["", "has space", "1x", "a{b}", "x" * 200, "é"]


# --- plans: what to build, as plain data (building may raise; drawing must not) ----------


@dataclass
class Leaf:
    name: str
    kind: str  # node | flaky | boom | map
    provides: str
    needs: list[str]  # data names it requires
    rebind: bool = False  # take its first need under another parameter name
    retry: int | None = None
    join: str | int | None = None


@dataclass
class Sub:
    name: str
    kind: str  # linear | unordered | graph
    items: list[Leaf | Sub]
    edges: list[tuple[str, str, tuple[str, str, Any] | None]] = field(default_factory=list)


def item_name(item: Leaf | Sub) -> str:
    return item.name


def rare(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws (not at the bounds Hypothesis favours), False when shrunk."""
    return draw(st.integers(0, n)) == n // 2


@st.composite
def plans(draw: st.DrawFn) -> Sub:
    provided: list[str] = []
    used: list[str] = []
    count = [0]

    def name(prefix: str) -> str:
        count[0] += 1
        if rare(draw, 40):
            return draw(st.sampled_from(BAD_NAMES))
        if used and rare(draw, 40):
            return draw(st.sampled_from(used))  # a name used twice
        used.append(f"{prefix}{count[0]}")
        return used[-1]

    def leaf() -> Leaf:
        kind = draw(st.sampled_from(["node"] * 6 + ["flaky", "boom", "map"]))
        pool = [*provided, *INPUTS] + (["nowhere"] if rare(draw, 30) else [])
        needs = [] if kind == "map" else draw(st.lists(st.sampled_from(pool), max_size=3, unique=True))
        n = name("t")
        out = draw(st.sampled_from(provided or ["v0"])) if rare(draw, 30) else f"v{count[0]}"
        provided.append(out)
        retry = draw(st.sampled_from([None, None, 1, 2])) if kind == "flaky" else None
        join = draw(st.sampled_from([None] * 8 + ["any", 1, 2, "all"]))
        return Leaf(n, kind, out, needs, draw(st.booleans()) and bool(needs), retry, join)

    def sub(depth: int) -> Sub:
        kind = draw(st.sampled_from(["linear", "unordered", "graph"]))
        s = Sub(name("f"), kind, [])
        size = draw(st.integers(0 if rare(draw, 30) else 1, 3))
        for _ in range(size):
            nested = depth < 2 and draw(st.integers(0, 3)) == 0
            s.items.append(sub(depth + 1) if nested else leaf())
        if kind == "graph" and len(s.items) > 1:
            names = [item_name(i) for i in s.items]
            for _ in range(draw(st.integers(0, 2))):
                a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
                cond = None
                if draw(st.booleans()):
                    value = draw(st.sampled_from([*provided, *INPUTS]))
                    op, arg = draw(st.sampled_from([(">", 2), ("<=", 3), ("truthy", None), ("==", 1)]))
                    cond = (value, op, arg)
                s.edges.append((a, b, cond))
        return s

    return sub(0)


def build(plan: Sub) -> Flow:
    items: list[Any] = []
    for item in plan.items:
        if isinstance(item, Sub):
            items.append(build(item))
            continue
        if item.kind == "map":
            items.append(flow.map(elem, over=LIST_INPUT, name=item.name, provides=item.provides))
            continue
        fn = {"node": node, "flaky": flaky, "boom": boom}[item.kind]
        params = ["p0", *item.needs[1:]] if item.rebind else item.needs
        n: TaskNode = fn.bind(
            item.name,
            requires=params,
            rebind={"p0": item.needs[0]} if item.rebind else None,
            provides=item.provides,
            retry=item.retry,
            join=item.join,
        )
        items.append(n)
    edges = [(a, b) if c is None else (a, b, flow.when(*c)) for a, b, c in plan.edges]
    if plan.kind == "graph":
        return flow.graph(plan.name, *items, edges=edges)
    return getattr(flow, plan.kind)(plan.name, *items)  # type: ignore[no-any-return]


def has_joins(spec: FlowSpec) -> bool:
    return any(t.join for t in spec.tasks.values())


# --- what the shape implies ---------------------------------------------------------------


@dataclass
class Expected:
    status: str  # SUCCESS | FAILED
    tasks: dict[str, str]  # task -> SUCCESS | SKIPPED, in a run that succeeds
    attempts: dict[str, int]
    values: dict[str, Any]
    elems: int  # map elements run


def expect(spec: FlowSpec, inputs: dict[str, Any]) -> Expected:
    """Run the spec in order, in this test, as the engine must: a task runs when at least one
    incoming edge was taken (all decided), a skipped task provides nothing."""
    vals: dict[str, Any] = dict(inputs)
    status: dict[str, str] = {}
    attempts: dict[str, int] = {}
    elems = 0
    todo = list(spec.tasks)
    while todo:
        name = next(n for n in todo if all(p in status for p in spec.tasks[n].preds))
        todo.remove(name)
        t = spec.tasks[name]
        taken = [
            status[p] == "SUCCESS" and (c is None or holds(c, vals.get(c["value"])))
            for p in t.preds
            for c in [spec.tasks[p].when.get(name)]
        ]
        if t.preds and not any(taken):
            status[name] = "SKIPPED"
            continue
        args = {param: vals.get(data) for param, data in t.args.items()}
        try:
            if t.map is not None:
                items = args[t.map["param"]]
                if not isinstance(items, list):
                    raise TypeError("not a list")
                value: Any = [x + 1 for x in items]
                elems += len(items)
            elif t.fn == "boom":
                raise ValueError("boom")
            elif t.fn == "flaky" and not (t.retry and t.retry["attempts"] >= 2):
                raise ConnectionError("first attempt fails")
            else:
                value = _total(args)
        except Exception:  # noqa: BLE001 - what the task raises fails the run
            return Expected("FAILED", {}, {}, {}, 0)
        status[name] = "SUCCESS"
        attempts[name] = 2 if t.fn == "flaky" else 1
        vals.update(dict.fromkeys(t.provides, value))
    result = {p: vals[p] for s in spec.sinks for p in spec.tasks[s].provides if status[s] == "SUCCESS"}
    return Expected("SUCCESS", status, attempts, result, elems)


# --- inputs -------------------------------------------------------------------------------

ints = st.integers(-5, 5)
odd_values = st.none() | st.text(max_size=3) | st.floats(allow_nan=False, width=32) | st.booleans()


@st.composite
def input_dicts(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in INPUTS:
        if not rare(draw, 15):
            out[k] = draw(odd_values) if rare(draw, 6) else draw(ints)
    if not rare(draw, 15):
        out[LIST_INPUT] = draw(odd_values) if rare(draw, 8) else draw(st.lists(ints, max_size=4))
    if rare(draw, 20):
        out[draw(st.sampled_from(INPUTS))] = {1, 2}  # msgpack cannot carry a set
    return out


key_text = st.sampled_from([*INPUTS, LIST_INPUT, "", "x y"]) | st.text(max_size=4)
value_text = st.sampled_from(["1", "-3", "[1, 2]", "[]", "null", '"s"', "abc", "{", "1e999"]) | st.text(
    max_size=5
)
pairs = st.lists(
    st.builds(lambda k, sep, v: f"{k}{sep}{v}", key_text, st.sampled_from(["=", "=", ":", ""]), value_text),
    max_size=4,
)


# --- the property -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rt():
    with LocalRuntime(registry=reg, concurrency=4) as runtime:
        yield runtime


def submit_or_refuse(rt: LocalRuntime, plan: Sub, inputs: dict[str, Any], rid: str) -> FlowSpec | None:
    """The compiled spec of an accepted run; None (checked: nothing enqueued) if refused."""
    try:
        spec = build(plan).compile(reg)
        rt.client.submit(spec, inputs, run_id=rid)
    except AckflowError as e:
        event(f"refused: {type(e).__name__}")
        assert str(e)
        with pytest.raises(RunNotFound):
            rt.client.status(rid)
        return None
    return spec


def check_run(rt: LocalRuntime, spec: FlowSpec, inputs: dict[str, Any], rid: str) -> None:
    info = rt.client.wait(rid, 30)  # WaitTimeout, never a hang, if a run does not finish
    assert info.done, info.status
    event(f"run: {info.status}")
    if has_joins(spec):
        # "any"/N joins start a task before all of its inputs are in: what it computes, and
        # so what later conditions decide, depends on timing, and the run may end while
        # tasks it no longer waits for still run (README, Known limits); the bounds hold.
        assert info.status in ("SUCCESS", "FAILED")
        assert all(calls[(rid, n)] <= (2 if spec.tasks[n].fn == "flaky" else 1) for n in spec.tasks)
        return
    want = expect(spec, inputs)
    assert info.status == want.status, (info.status, info.error)
    if info.status == "FAILED":
        assert info.error is not None and info.error["task"] in spec.tasks
        return
    mine = {n: t for n, t in info.tasks.items() if n in spec.tasks}
    assert {n: t.status for n, t in mine.items()} == want.tasks
    for n, t in spec.tasks.items():
        if t.map is None:
            assert calls[(rid, n)] == want.attempts.get(n, 0), n  # each body ran exactly once per attempt
    assert calls[(rid, "elem")] == want.elems
    assert info.result == want.values


counter = [0]


def run_id() -> str:
    counter[0] += 1
    return f"fuzz-flow-{counter[0]}"


@LIMIT
@given(plan=plans(), inputs=input_dicts())
@example(plan=Sub("first", "linear", [Leaf("m1", "map", "v1", [])]), inputs={LIST_INPUT: []})
@example(
    plan=Sub("two", "unordered", [Leaf("m1", "map", "v1", []), Leaf("m2", "map", "v2", [])]),
    inputs={LIST_INPUT: []},
)
@example(  # a join of 2 whose second edge's condition is false: skipped, so the flaky task never fails
    plan=Sub(
        "f1",
        "graph",
        [
            Leaf("t2", "node", "v2", []),
            Leaf("t3", "flaky", "v3", ["v2"], retry=1, join=2),
            Leaf("t4", "node", "v4", ["v2"]),
        ],
        [("t4", "t3", ("v2", ">", 2))],
    ),
    inputs={},
)
@example(  # join="any" on the sink: the run ends while t3 and t5 may still run
    plan=Sub(
        "f1",
        "linear",
        [
            Leaf("t2", "node", "v2", []),
            Leaf("t3", "node", "v3", []),
            Sub("f4", "linear", [Leaf("t5", "node", "v5", []), Leaf("t6", "node", "v6", ["v2"], join="any")]),
        ],
    ),
    inputs={},
)
def test_any_flow_is_refused_before_enqueue_or_runs_to_its_implied_end(
    rt: LocalRuntime, plan: Sub, inputs: dict[str, Any]
) -> None:
    rid = run_id()
    spec = submit_or_refuse(rt, plan, inputs, rid)
    if spec is not None:
        check_run(rt, spec, inputs, rid)


@LIMIT
@given(
    plan=plans(),
    given_pairs=pairs,
    inputs_json=st.none() | st.sampled_from(["{}", "[]", "{", '{"in0": 1}', "1"]),
)
def test_any_input_flags_are_refused_or_run(
    rt: LocalRuntime, plan: Sub, given_pairs: list[str], inputs_json: str | None
) -> None:
    try:
        inputs = parse_inputs(given_pairs, inputs_json)
    except click.BadParameter as e:  # exit 2 with this message, before anything is built
        event("refused: --input/--inputs")
        assert e.message
        return
    rid = run_id()
    spec = submit_or_refuse(rt, plan, inputs, rid)
    if spec is not None:
        check_run(rt, spec, inputs, rid)
