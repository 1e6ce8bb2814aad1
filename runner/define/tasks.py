"""The ``@task`` decorator and the registry workers look tasks up in.

A task's inputs (``requires``) are its parameters; a parameter with a default is optional.
Its output is bound to the name(s) in ``provides``.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, overload

from runner.define.input_types import param_kinds
from runner.define.retry import Retry, policy
from runner.errors import DuplicateRegistrationError, FlowDefinitionError, UnknownTaskError

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
DEFAULT_QUEUE = "default"
REVERT_SUFFIX = ".revert"
FAILURE_PARAM = "failure"  # a revert handler with this parameter is also called for a failure


def revert_name(task_name: str) -> str:
    """The registry name of a task's revert (compensation) handler."""
    return task_name + REVERT_SUFFIX


def _timeout(value: float | None) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FlowDefinitionError(f"timeout must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _join(value: str | int | None) -> int:
    """``"all"`` (0), ``"any"`` (1), or at least N predecessors."""
    if value is None or value == "all":
        return 0
    if value == "any":
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise FlowDefinitionError(f"join must be 'all', 'any' or a number >= 1, not {value!r}")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise FlowDefinitionError(
            f"{kind} name {name!r} must start with a letter or '_' and use only letters, "
            "digits, '_', '.', '-' (at most 128 characters)"
        )
    return name


@dataclass(frozen=True)
class TaskDef:
    """A registered task: a function plus its data flow and placement."""

    name: str
    fn: Callable[..., Any] = field(repr=False, compare=False)
    requires: tuple[str, ...]  # parameter names without defaults
    optional: tuple[str, ...]  # parameter names with defaults
    extra_requires: tuple[str, ...]  # names passed as keyword arguments (**kwargs)
    provides: tuple[str, ...]
    unpack: bool  # True when provides lists several names bound from one return value
    queue: str = DEFAULT_QUEUE
    retry: Retry | None = None
    timeout_s: float = 0.0  # 0 = no limit per attempt
    registry: Registry | None = field(default=None, repr=False, compare=False)
    # parameter -> simple kind (`runner.define.input_types`), for a stand-in without a real
    # function (`runner.define.catalogue`); None: read from ``fn``'s type hints
    kinds: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    def param_kinds(self) -> dict[str, str]:
        """The simple kinds of the task's parameters that have one (what submits check)."""
        return dict(self.kinds) if self.kinds is not None else param_kinds(self.fn)

    @functools.cached_property  # ``fn`` never changes (frozen); workers ask once per request
    def is_async(self) -> bool:
        """An ``async def`` task: workers run it on their event loop, not in a thread."""
        return is_async_function(self.fn)

    def revert(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: register ``fn`` as this task's compensation.

        When a run fails, the revert handlers of its completed tasks run in reverse dependency
        order; each receives the task's inputs (by parameter name) and ``result``, what the
        task returned. A handler with a ``failure`` parameter is also called when its own task
        failed for good (TaskFlow's revert of the failed atom): ``result`` is then None and
        ``failure`` a `runner.Failure`; otherwise ``failure`` is None. For a map node the
        handler is called once per element, with that element's input and result. It may be
        ``async def`` (run on the worker's event loop). Returns
        ``fn`` unchanged.
        """
        _register_revert(self.registry or REGISTRY, self.name, fn)
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def bind(
        self,
        name: str | None = None,
        *,
        rebind: Mapping[str, str] | None = None,
        provides: str | Iterable[str] | None = None,
        requires: Iterable[str] = (),
        queue: str | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        join: str | int | None = None,
    ) -> TaskNode:
        """A use of this task in a flow, optionally renamed, with inputs or outputs rebound.

        ``requires`` adds names passed as keyword arguments (the function takes ``**kwargs``).
        ``retry``/``timeout`` override the task's own; ``join`` says how many predecessors
        must succeed first: ``"all"`` (default), ``"any"`` or a number.
        """
        return self.node().bind(
            name,
            rebind=rebind,
            provides=provides,
            requires=requires,
            queue=queue,
            retry=retry,
            timeout=timeout,
            join=join,
        )

    named = bind

    def node(self) -> TaskNode:
        args = {p: p for p in self.requires}
        args.update({p: p for p in self.extra_requires})
        return TaskNode(
            name=self.name,
            task=self.name,
            args=args,
            optional={p: p for p in self.optional},
            provides=self.provides,
            unpack=self.unpack,
            queue=self.queue,
            retry=self.retry,
            timeout_s=self.timeout_s,
        )


@dataclass(frozen=True)
class TaskNode:
    """One task in one flow: the node name is unique in the flow; ``args`` maps parameter to data name."""

    name: str
    task: str
    args: Mapping[str, str]
    optional: Mapping[str, str]
    provides: tuple[str, ...]
    unpack: bool
    queue: str
    retry: Retry | None = None
    timeout_s: float = 0.0
    join: int = 0  # 0 = all predecessors, else at least this many
    map_param: str = ""  # a map node: this parameter takes each element of args[map_param]
    map_limit: int = 0  # a map node: elements running at once (0 = all)

    def bind(
        self,
        name: str | None = None,
        *,
        rebind: Mapping[str, str] | None = None,
        provides: str | Iterable[str] | None = None,
        requires: Iterable[str] = (),
        queue: str | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        join: str | int | None = None,
    ) -> TaskNode:
        changes: dict[str, Any] = {}
        if retry is not None:
            changes["retry"] = policy(retry)
        if timeout is not None:
            changes["timeout_s"] = _timeout(timeout)
        if join is not None:
            changes["join"] = _join(join)
        extra = [check_name("required value", r) for r in requires]
        if extra:
            changes["args"] = {**self.args, **{r: r for r in extra}}
        if name is not None:
            changes["name"] = check_name("task", name)
        if rebind:
            args, optional = dict(changes.get("args", self.args)), dict(self.optional)
            for param, data_name in rebind.items():
                if param in args:
                    args[param] = data_name
                elif param in optional:
                    optional[param] = data_name
                else:
                    raise FlowDefinitionError(f"task {self.name!r} has no parameter {param!r} to rebind")
            changes["args"], changes["optional"] = args, optional
        if provides is not None:
            changes["provides"], changes["unpack"] = _provides(provides)
        if queue is not None:
            changes["queue"] = check_name("queue", queue)
        return replace(self, **changes)


def _provides(provides: str | Iterable[str] | None) -> tuple[tuple[str, ...], bool]:
    if provides is None:
        return (), False
    if isinstance(provides, str):
        return (check_name("provided value", provides),), False
    names = tuple(check_name("provided value", p) for p in provides)
    if len(set(names)) != len(names):
        raise FlowDefinitionError(f"provides lists a name twice: {names}")
    return names, True


class Registry:
    """Task name -> `TaskDef`. Workers execute only what is registered here."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDef] = {}

    def add(self, task_def: TaskDef) -> None:
        """Register ``task_def``; the same definition again (a module imported twice) replaces
        the old one, another definition under a taken name raises `DuplicateRegistrationError`."""
        old = self._tasks.get(task_def.name)
        if old is not None and _site(old.fn) != _site(task_def.fn):
            raise DuplicateRegistrationError(task_def.name, _where(old.fn), _where(task_def.fn))
        self._tasks[task_def.name] = task_def

    def get(self, name: str) -> TaskDef:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(name, list(self._tasks)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def has_async(self) -> bool:
        """Whether any registered task or revert handler is ``async def``."""
        return any(td.is_async for td in self._tasks.values())


def _call_method(obj: object) -> object:
    """The ``__call__`` an instance of a class with one is called through (None otherwise)."""
    return (
        None
        if inspect.isroutine(obj) or isinstance(obj, type)
        else inspect.getattr_static(type(obj), "__call__", None)
    )


def is_async_function(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` makes a coroutine (``async def``, also behind decorators that
    wrap it with functools.wraps, a partial, or an object whose ``__call__`` is async)."""
    f = inspect.unwrap(fn)
    return inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(_call_method(f))


def _refuse_async_generator(what: str, fn: Callable[..., Any]) -> None:
    """A task returns one result: an async generator yields many and would never run, so it
    is refused when the task is defined, not when it runs."""
    f = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(f) or inspect.isasyncgenfunction(_call_method(f)):
        raise FlowDefinitionError(
            f"{what} is an async generator function (async def with yield): a task returns one "
            "result; collect the items into a list and return it (async def tasks are supported)"
        )


def _register_revert(registry: Registry, task_name: str, fn: Callable[..., Any]) -> None:
    if not callable(fn):
        raise FlowDefinitionError(f"the revert handler of {task_name!r} must be a function")
    _refuse_async_generator(f"the revert handler of {task_name!r}", fn)
    params = inspect.signature(fn).parameters.values()
    if any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) for p in params):
        raise FlowDefinitionError(f"the revert handler of {task_name!r} must take keyword arguments only")
    registry.add(
        TaskDef(
            name=revert_name(task_name),
            fn=fn,
            requires=(),
            optional=(),
            extra_requires=(),
            provides=(),
            unpack=False,
        )
    )


def takes_failure(registry: Registry, task_name: str) -> bool:
    """Whether the revert handler of ``task_name`` (if it has one) takes ``failure`` (not when
    the task has an input of that name: its handler gets that input, as it always did)."""
    name = revert_name(task_name)
    if name not in registry or task_name not in registry:
        return False
    td = registry.get(task_name)
    if FAILURE_PARAM in (*td.requires, *td.optional, *td.extra_requires):
        return False
    return FAILURE_PARAM in inspect.signature(registry.get(name).fn).parameters


def _site(fn: Callable[..., Any]) -> tuple[str, str, int] | int:
    """Where ``fn`` is defined: (qualified name, file, first line); the same for the function
    a re-imported module defines again. Callables without source compare by identity."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return id(fn)
    return getattr(fn, "__qualname__", code.co_name), code.co_filename, code.co_firstlineno


def _where(fn: Callable[..., Any]) -> str:
    """``module:qualname (file:line)``, to name a definition in an error."""
    name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"
    site = _site(fn)
    return f"{name} ({site[1]}:{site[2]})" if isinstance(site, tuple) else name


# The registry `@task` adds to. It holds plain functions only, never a connection.
REGISTRY = Registry()


@overload
def task(fn: Callable[..., Any], /) -> TaskDef: ...
@overload
def task(
    *,
    name: str | None = ...,
    provides: str | Iterable[str] | None = ...,
    requires: Iterable[str] = ...,
    queue: str = ...,
    retry: Retry | int | None = ...,
    timeout: float | None = ...,
    revert: Callable[..., Any] | None = ...,
    registry: Registry | None = ...,
) -> Callable[[Callable[..., Any]], TaskDef]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    provides: str | Iterable[str] | None = None,
    requires: Iterable[str] = (),
    queue: str = DEFAULT_QUEUE,
    retry: Retry | int | None = None,
    timeout: float | None = None,
    revert: Callable[..., Any] | None = None,
    registry: Registry | None = None,
) -> TaskDef | Callable[[Callable[..., Any]], TaskDef]:
    """Register a function as a task.

    ``provides`` binds the return value to a name, or a sequence returned by the task to
    several names. ``requires`` adds names passed as keyword arguments to a ``**kwargs``
    function. ``queue`` picks the task queue its requests go to. ``retry`` is a `Retry`
    policy (or a number of attempts); ``timeout`` limits each attempt, in seconds;
    ``revert`` is its compensation (see `TaskDef.revert`).

    The function may be ``async def``: a worker then runs it on its event loop (bounded by
    its ``--async-concurrency``) instead of a thread; a timeout or a cancelled run cancels it.
    """

    def decorate(f: Callable[..., Any]) -> TaskDef:
        if not callable(f):
            raise FlowDefinitionError(f"@task needs a function, not {type(f).__name__}")
        _refuse_async_generator(f"task {getattr(f, '__name__', f)!r}", f)
        required: list[str] = []
        optional: list[str] = []
        has_kwargs = False
        for p in inspect.signature(f).parameters.values():
            if p.kind in (p.VAR_POSITIONAL,):
                raise FlowDefinitionError(f"task {f.__name__!r}: *args parameters are not supported")
            if p.kind is p.VAR_KEYWORD:
                has_kwargs = True
            elif p.kind is p.POSITIONAL_ONLY:
                raise FlowDefinitionError(
                    f"task {f.__name__!r}: positional-only parameter {p.name!r} is not supported"
                )
            elif p.default is p.empty:
                required.append(p.name)
            else:
                optional.append(p.name)
        extra = tuple(requires)
        if extra and not has_kwargs:
            raise FlowDefinitionError(
                f"task {f.__name__!r} lists requires={extra} but takes no **kwargs to receive them"
            )
        names, unpack = _provides(provides)
        td = TaskDef(
            name=check_name("task", name or f.__name__),
            fn=f,
            requires=tuple(required),
            optional=tuple(optional),
            extra_requires=tuple(check_name("required value", r) for r in extra),
            provides=names,
            unpack=unpack,
            queue=check_name("queue", queue),
            retry=policy(retry),
            timeout_s=_timeout(timeout),
            registry=registry,
        )
        (registry or REGISTRY).add(td)
        if revert is not None:
            _register_revert(registry or REGISTRY, td.name, revert)
        return td

    return decorate(fn) if fn is not None else decorate
