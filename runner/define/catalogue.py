"""The task catalogue as data: what compiling a flow needs to know of each task, written by
the processes that import the tasks (workers, ``ackflow flows register|apply``) and read where
none is imported (``ackflow serve`` compiling an inline definition, `runner.client.catalogue`).

An entry is plain data (msgpack/JSON): the task's name, where its function is defined (for
people), its parameters (required, with defaults, passed as ``**kwargs``) and their simple
type hints (`runner.define.input_types`), what it provides, its queue, retry and timeout, and
whether it has a revert handler (taking ``failure`` or not) and is ``async def``. `stand_ins`
turns entries back into a `Registry` of `TaskDef`s whose functions only refuse to run: a flow
compiled against it gives the spec, byte for byte, that the real tasks give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.define.retry import Retry
from runner.define.tasks import REVERT_SUFFIX, Registry, TaskDef, check_name, revert_name, takes_failure
from runner.errors import FlowDefinitionError

FORMAT = 1  # an entry's ``format``: readers refuse (skip) a newer one rather than misread it


def _stand_in(**_: Any) -> Any:
    raise FlowDefinitionError("a task catalogue stand-in: its task runs on a worker, never here")


def _stand_in_revert(failure: Any = None, **_: Any) -> Any:  # takes ``failure``: see takes_failure
    raise FlowDefinitionError("a task catalogue stand-in: its revert runs on a worker, never here")


def entry(td: TaskDef, registry: Registry) -> dict[str, Any]:
    """What compiling a flow needs of task ``td`` (registered in ``registry``), as plain data."""
    fn = td.fn
    return {
        "format": FORMAT,
        "name": td.name,
        "fn": f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}",
        "requires": list(td.requires),
        "optional": list(td.optional),
        "extra_requires": list(td.extra_requires),
        "kinds": td.param_kinds(),
        "provides": list(td.provides),
        "unpack": td.unpack,
        "queue": td.queue,
        "retry": td.retry.to_data() if td.retry is not None else None,
        "timeout_s": td.timeout_s,
        "revert": revert_name(td.name) in registry,
        "revert_failure": takes_failure(registry, td.name),
        "async": td.is_async,
    }


def entries(registry: Registry) -> list[dict[str, Any]]:
    """The entries of every task of ``registry`` (revert handlers are part of their task's)."""
    return [
        entry(registry.get(name), registry) for name in registry.names() if not name.endswith(REVERT_SUFFIX)
    ]


def task_def(e: Mapping[str, Any]) -> TaskDef:
    """The stand-in `TaskDef` of an entry; `FlowDefinitionError` for an entry it cannot read."""
    try:
        if int(e.get("format", FORMAT)) > FORMAT:
            raise ValueError(f"format {e['format']} is newer than this ackflow's ({FORMAT})")
        kinds = e["kinds"]
        retry = e["retry"]
        return TaskDef(
            name=check_name("task", str(e["name"])),
            fn=_stand_in,
            requires=tuple(str(p) for p in e["requires"]),
            optional=tuple(str(p) for p in e["optional"]),
            extra_requires=tuple(str(p) for p in e["extra_requires"]),
            provides=tuple(str(p) for p in e["provides"]),
            unpack=bool(e["unpack"]),
            queue=check_name("queue", str(e["queue"])),
            retry=Retry.from_data(retry) if retry is not None else None,
            timeout_s=float(e["timeout_s"]),
            kinds={str(k): str(v) for k, v in dict(kinds).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError, FlowDefinitionError) as err:
        raise FlowDefinitionError(
            f"the catalogue entry of task {e.get('name')!r} cannot be read: {err}"
        ) from None


def stand_ins(found: Iterable[Mapping[str, Any]]) -> Registry:
    """A registry of stand-ins for the tasks of the catalogue entries ``found`` (unreadable
    entries are left out: a flow naming one gets "unknown task")."""
    registry = Registry()
    for e in found:
        try:
            td = task_def(e)
        except FlowDefinitionError:
            continue
        registry.add(td)
        if e.get("revert"):
            fn = _stand_in_revert if e.get("revert_failure") else _stand_in
            registry.add(
                TaskDef(
                    name=revert_name(td.name),
                    fn=fn,
                    requires=(),
                    optional=(),
                    extra_requires=(),
                    provides=(),
                    unpack=False,
                )
            )
    return registry
