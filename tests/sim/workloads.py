"""Workloads drawn from a seed: flows over the DSL, their inputs, and the tasks they call.

Every task is a deterministic function of its inputs and its own name (no sleeps, no clock),
so a run's result under faults must equal its result without them. Each execution of a body
or a revert handler is recorded with the process that ran it (`EXECUTIONS`), for the checks
"every attempt ran" and "compensation in reverse dependency order".

Shapes: chains (linear), fan-out/fan-in (unordered, joined by the next task), nesting,
map over a list (with a limit), graphs with a conditional edge and an ``any`` join, retries
with backoff (tasks failing on their first attempts), timeouts armed but never reached, and
tasks that always fail (the run then compensates its completed tasks with revert handlers,
the failed task's own handler, which takes ``failure``, and a map's handler per element);
poison tasks (each execution kills its worker: the run fails with the poison reason), lazy
tasks (they defer; the simulator's outside system completes them with their token), gated
tasks (fail until their run is retried by its operator), and tasks whose result is over the
payload limit.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner import ForEach, Retry, Times, current_task, flow
from runner.define.conditions import when
from runner.define.flows import FlowSpec
from runner.define.tasks import Registry, TaskNode, task
from runner.lazy import Deferred, defer
from tests.sim.world import PoisonKill

REGISTRY = Registry()
SCOPED = [False]  # runs also get flows with retry controllers (test_sim's retry-scope slice)
EXECUTIONS: list[tuple[str, str]] = []  # (idempotency key, ":revert" suffixed for handlers; process)
CURRENT = ["?"]  # the simulated process running a task body now
TRIES: dict[tuple[str, str], list[int]] = {}
"""(run, task) -> the attempts whose body ran, in order: a planned flake fails the first tries
that ran, whatever their attempt numbers (an attempt handed back unstarted by a pause never
ran, and the engine sends the next one); every execution of one attempt agrees."""
LAZY: list[tuple[str, str, str]] = []  # (run id, task, the completion token) per lazy execution
BIG_BYTES = 70_000  # over the simulator's payload limit (tests/sim/simulate.CONFIG)


EXEC_INFO: list[Any] = []  # per execution: what `PROBE` said as it started
PROBE: list[Callable[[str], Any]] = [lambda run_id: None]  # set by the simulator


class Poison(PoisonKill):
    """Raised by a poison task's body: its worker dies (the simulator crashes the process)."""


def lazy_value(task: str) -> int:
    """What the outside system completes a lazy task with (a function of its name alone)."""
    return zlib.crc32(task.encode()) % 100_003


def _record(suffix: str = "") -> None:
    EXECUTIONS.append((current_task().idempotency_key + suffix, CURRENT[0]))
    EXEC_INFO.append(PROBE[0](current_task().run_id))


def _flat(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (list, tuple)):
        return sum(_flat(x) for x in v)
    return 0


def _value(name: str, kw: dict[str, Any]) -> int:
    return (sum(_flat(v) for v in kw.values()) * 7 + zlib.crc32(name.encode()) % 97) % 1_000_003


@task(name="s_mix", provides="out", registry=REGISTRY)
def s_mix(**kw: Any) -> int:
    _record()
    return _value(current_task().task, kw)


@s_mix.revert
def s_mix_undo(**kw: Any) -> None:
    _record(":revert")


@task(name="s_plain", provides="out", registry=REGISTRY)
def s_plain(**kw: Any) -> int:
    """No revert handler: compensation passes over it."""
    _record()
    return _value(current_task().task, kw)


@task(name="s_flaky", provides="out", registry=REGISTRY, retry=Retry(attempts=3, delay=0.5, jitter=False))
def s_flaky(**kw: Any) -> int:
    """Fails its first try or two (the count is the name's last digit, 1 or 2)."""
    _record()
    ctx = current_task()
    tries = TRIES.setdefault((ctx.run_id, ctx.task), [])
    if ctx.attempt not in tries:
        tries.append(ctx.attempt)
    if tries.index(ctx.attempt) < int(ctx.task[-1]):
        raise ConnectionError(f"planned flake at attempt {ctx.attempt}")
    return _value(ctx.task, kw)


@s_flaky.revert
def s_flaky_undo(**kw: Any) -> None:
    _record(":revert")


@task(name="s_flakyp", provides="out", registry=REGISTRY, retry=Retry(attempts=3, delay=0.5, jitter=False))
def s_flakyp(**kw: Any) -> int:
    """`s_flaky` without a revert handler (for gated runs, which must stay retryable)."""
    _record()
    ctx = current_task()
    if ctx.attempt <= int(ctx.task[-1]):
        raise ConnectionError(f"planned flake at attempt {ctx.attempt}")
    return _value(ctx.task, kw)


@task(name="s_boom", provides="out", registry=REGISTRY, retry=Retry(attempts=2, delay=0.2, jitter=False))
def s_boom(**kw: Any) -> int:
    _record()
    raise RuntimeError(f"planned failure of {current_task().task}")


@s_boom.revert
def s_boom_undo(failure: Any = None, **kw: Any) -> None:
    """Takes ``failure``: called for its own task's failure, as TaskFlow reverts a failed atom."""
    assert failure is not None and failure.type == "RuntimeError", failure
    _record(":revert")


@task(name="s_list", provides="items", registry=REGISTRY)
def s_list(**kw: Any) -> list[int]:
    _record()
    base = _value(current_task().task, kw)
    return [base + i for i in range(int(current_task().task.rsplit("_", 1)[1]))]


@task(name="s_each", provides="each", registry=REGISTRY)
def s_each(item: int) -> int:
    _record()
    return item * 3 + 1


@s_each.revert
def s_each_undo(item: int, result: int | None) -> None:
    """A map node's handler: called per element that succeeded."""
    assert result == item * 3 + 1, (item, result)
    _record(":revert")


@task(name="s_eachp", provides="each", registry=REGISTRY)
def s_eachp(item: int) -> int:
    """`s_each` without a revert handler (for gated runs, which must stay retryable)."""
    _record()
    return item * 3 + 1


@task(name="s_poison", provides="out", registry=REGISTRY)
def s_poison(**kw: Any) -> int:
    """Kills its worker, every time (G5: the request is dead-lettered, the attempt fails)."""
    _record()
    raise Poison(current_task().task)


@task(name="s_lazy", provides="out", registry=REGISTRY)
def s_lazy(**kw: Any) -> Deferred:
    """Hands its token to the outside system and defers; completed with `lazy_value`."""
    _record()
    ctx = current_task()
    LAZY.append((ctx.run_id, ctx.task, ctx.completion_token))
    return defer()


@task(name="s_gate", provides="out", registry=REGISTRY, retry=Retry(attempts=2, delay=0.3, jitter=False))
def s_gate(**kw: Any) -> int:
    """Fails its attempts 1 to 3: its two tries fail the run, which its operator retries once;
    of the retry's two tries the first fails and the second succeeds (a retry of the run
    gives its failed tasks their full retry policy again)."""
    _record()
    ctx = current_task()
    tries = TRIES.setdefault((ctx.run_id, ctx.task), [])  # tries that ran (see TRIES)
    if ctx.attempt not in tries:
        tries.append(ctx.attempt)
    if tries.index(ctx.attempt) < 3:
        raise ConnectionError(f"gate closed at attempt {ctx.attempt}")
    return _value(ctx.task, kw)


@task(name="s_big", provides="out", registry=REGISTRY)
def s_big(**kw: Any) -> str:
    """A result over the payload limit: the worker fails the attempt instead of sending it."""
    _record()
    return "x" * BIG_BYTES


@task(name="s_once", provides="out", registry=REGISTRY)
def s_once(**kw: Any) -> int:
    """No retry policy of its own: fails the first try that ran, so its retry scope reverts and
    runs again (or, with one attempt, hands the failure on)."""
    _record()
    ctx = current_task()
    tries = TRIES.setdefault((ctx.run_id, ctx.task), [])
    if ctx.attempt not in tries:
        tries.append(ctx.attempt)
    if tries.index(ctx.attempt) < 1:
        raise ConnectionError(f"planned failure at attempt {ctx.attempt}")
    return _value(ctx.task, kw)


@s_once.revert
def s_once_undo(**kw: Any) -> None:
    _record(":revert")


@dataclass
class Workload:
    """The runs of one simulated seed: (flow, inputs) each, submitted at the start."""

    runs: list[tuple[FlowSpec, dict[str, Any]]] = field(default_factory=list)
    retried: set[int] = field(default_factory=set)  # runs their operator retries once if FAILED

    def describe(self) -> str:
        return ", ".join(f"{f.name}" for f, _ in self.runs)


class _Gen:
    def __init__(self, rng: random.Random, plain: bool = False) -> None:
        self.rng = rng
        self.n = 0
        self.tasks = 0
        self.plain = plain  # no task with a revert handler (a failed run stays FAILED: retryable)

    def name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"

    def node(self, requires: list[str], fn: Any = None, **kw: Any) -> tuple[TaskNode, str]:
        fn = fn or (s_mix if self.rng.random() < 0.8 and not self.plain else s_plain)
        if self.plain and fn in (s_boom, s_big):  # it must fail at its gate alone
            fn = s_plain
        if self.plain and fn is s_flaky:
            fn = s_flakyp
        name = self.name("t")
        if fn in (s_flaky, s_flakyp):
            name += f"_{self.rng.randint(1, 2)}"
        out = f"v_{name}"
        self.tasks += 1
        if self.rng.random() < 0.15:
            kw.setdefault("timeout", 3600)  # armed, cancelled when the task ends, never fired
        return fn.bind(name, requires=requires, provides=out, **kw), out

    def block(self, inputs: list[str], depth: int) -> tuple[Any, list[str]]:
        r = self.rng.random()
        if depth <= 0 or r < 0.35 or self.tasks > 24:
            q = self.rng.random()
            fn = (
                s_flaky
                if q < 0.15
                else s_boom
                if q < 0.2
                else s_lazy
                if q < 0.27
                else s_big
                if q < 0.28
                else None
            )
            t, out = self.node(inputs, fn)
            return t, [out]
        if r < 0.6:
            cur, items = inputs, []
            for _ in range(self.rng.randint(2, 4)):
                item, cur = self.block(cur, depth - 1)
                items.append(item)
            return flow.linear(self.name("lin"), *items), cur
        if r < 0.8:
            outs: list[str] = []
            items = []
            for _ in range(self.rng.randint(2, 4)):
                item, o = self.block(inputs, depth - 1)
                items.append(item)
                outs += o
            return flow.unordered(self.name("par"), *items), outs
        if r < 0.9:
            n = self.rng.randint(0, 5)
            lst_name = self.name("list") + f"_{n}"
            lst = s_list.bind(lst_name, requires=inputs, provides=f"v_{lst_name}")
            m = flow.map_items(
                (s_eachp if self.plain else s_each).bind(self.name("each")),
                over=f"v_{lst_name}",
                provides=self.name("v_m"),
                limit=2,
            )
            self.tasks += n + 1
            return flow.linear(self.name("maplin"), lst, m), [m.provides[0]]
        # a graph: a -> b only when a's value is over 500000; a -> c; d after b or c (join any)
        a, va = self.node(inputs)
        b, _ = self.node([va])
        c, vc = self.node([va])
        d, vd = self.node([], join="any")
        g = flow.graph(
            self.name("g"),
            a,
            b,
            c,
            d,
            edges=[(a.name, b.name, when(va, ">", 500_000)), (b.name, d.name), (c.name, d.name)],
        )
        return g, [vc, vd]

    def scoped(self, inputs: list[str], depth: int) -> tuple[Any, list[str]]:
        """A linear flow with a retry controller: a few tasks (one may fail once, or always),
        maybe a nested scope."""
        items: list[Any] = []
        # unordered: all start at once, so at most one may fail once and none is a scope (two
        # failures in parallel scopes: which one is handled first is up to timing, and so is
        # the outcome — the checks compare it with the fault-free run's)
        cur, outs, parallel = inputs, [], self.rng.random() < 0.3
        once = False
        for _ in range(self.rng.randint(1, 3)):
            q = self.rng.random()
            if depth > 1 and q < 0.25 and not parallel:
                item, got = self.scoped(cur, depth - 1)
            else:
                fn = s_once if q < 0.5 else s_boom if q < 0.58 else s_flaky if q < 0.65 else None
                if parallel and fn is s_once:
                    fn, once = (None if once else s_once), True
                item, out = self.node(inputs if parallel else cur, fn)
                got = [out]
            outs += got
            cur = got
            items.append(item)
        r, revert_all = self.rng.random(), self.rng.random() < 0.2
        if r < 0.6:
            ctl: Any = Times(self.rng.randint(1, 3), revert_all=revert_all)
        else:
            ctl = ForEach(range(self.rng.randint(1, 3)), provides=self.name("v_each"), revert_all=revert_all)
        if parallel:
            return flow.unordered(self.name("retry"), *items, retry=ctl), outs
        return flow.linear(self.name("retry"), *items, retry=ctl), cur


def generate(rng: random.Random, max_runs: int = 3) -> Workload:
    w = Workload()
    for i in range(rng.randint(1, max_runs)):
        kind = rng.random()
        g = _Gen(rng, plain=kind < 0.12)
        body, outs = g.block(["x"], depth=3)
        items = [body]
        if SCOPED[0] and not g.plain:
            scoped, outs = g.scoped(outs, depth=3)
            items.append(scoped)
        if kind < 0.12:  # fails at its gate; its operator retries it once, and then it succeeds
            w.retried.add(i)
            if kind < 0.06:  # after the body
                t, _ = g.node(outs, s_gate)
                items.append(t)
            else:  # beside it: the run fails while the body's tasks run or wait to retry
                t, _ = g.node(["x"], s_gate)
                items = [flow.unordered(g.name("gated"), body, t)]
        elif kind < 0.18:  # a poison task: each execution kills its worker; the run fails
            t, _ = g.node(outs, s_poison)
            items.append(t)
        elif rng.random() < 0.2:  # a run that fails and compensates what it completed
            t, _ = g.node(outs, s_boom)
            items.append(t)
        w.runs.append((flow.linear(f"sim{i}", *items).compile(REGISTRY), {"x": rng.randint(0, 1000)}))
    return w
