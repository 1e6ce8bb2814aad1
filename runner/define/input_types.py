"""What a run's inputs must look like, from its tasks' parameters: names and simple types.

At compile time `kind_of` turns a parameter's type hint into a *kind* when the hint is a simple
type (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, parametrised ``list[...]`` /
``dict[...]``, and ``Optional`` of those, written ``"int?"``); anything else (a class of the
user's, a ``Union`` of several, an unresolvable forward reference) has no kind and is not
checked. At submit, `check_inputs` refuses an unknown input name (suggesting the closest known
one) and a value that does not fit the kind of a parameter it is passed to, before anything is
enqueued.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.errors import InputTypeError, UnknownInputError

_SIMPLE: dict[Any, str] = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict"}
_FITS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list | tuple),
    "dict": lambda v: isinstance(v, Mapping),
}
KINDS = frozenset(_FITS) | {f"{k}?" for k in _FITS}
EACH = "each "
"""Prefixes the kind of a map parameter: it applies to each element of the input."""


def kind_of(hint: Any) -> str | None:
    """The kind of a type hint, or None when it is not a simple type."""
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        return _SIMPLE[origin]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            inner = kind_of(args[0])
            return f"{inner}?" if inner and not inner.endswith("?") else None
    return None


def param_kinds(fn: Callable[..., Any]) -> dict[str, str]:
    """The kinds of ``fn``'s parameters that have one (hints that cannot be resolved: none)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - a forward reference to a name not importable here
        return {}
    try:
        defaults = {p.name: p.default for p in inspect.signature(fn).parameters.values()}
    except (TypeError, ValueError):
        defaults = {}
    out = {}
    for name, hint in hints.items():
        kind = kind_of(hint)
        if name == "return" or kind is None:
            continue
        if defaults.get(name, inspect.Parameter.empty) is None and not kind.endswith("?"):
            kind += "?"  # ``x: int = None``: None is what it gets when not given
        out[name] = kind
    return out


def fits(kind: str, value: Any) -> bool:
    if kind.endswith("?"):
        return value is None or _FITS[kind[:-1]](value)
    return _FITS[kind](value)


def check_inputs(
    inputs: Mapping[str, Any], known: Sequence[str], kinds: Mapping[str, Sequence[Sequence[str]]]
) -> None:
    """Raise `UnknownInputError` or `InputTypeError` for the first input that is wrong.

    ``kinds``: input name -> [(task, parameter, kind)] of the parameters it is passed to; a
    map node's parameter gets each element of the input: its kind is written ``EACH + kind``."""
    for name in inputs:
        if name not in known:
            raise UnknownInputError(name, difflib.get_close_matches(name, known, n=1), sorted(known))
    for name, value in inputs.items():
        for task, param, kind in kinds.get(name, ()):
            if not kind.startswith(EACH):
                if not fits(kind, value):
                    raise InputTypeError(name, task, param, kind, value)
                continue
            if not isinstance(value, list | tuple):
                raise InputTypeError(name, f"{task} (a map over it)", param, "list", value)
            for i, item in enumerate(value):
                if not fits(kind[len(EACH) :], item):
                    raise InputTypeError(f"{name}[{i}]", task, param, kind[len(EACH) :], item)


def text_inputs(input_kinds: Mapping[str, Sequence[Sequence[str]]]) -> set[str]:
    """The inputs every parameter of which is hinted ``str`` (or ``str | None``): a command
    line gives them as typed, never parsed as JSON."""
    return {
        name
        for name, entries in input_kinds.items()
        if entries and all(kind in ("str", "str?") for _, _, kind in entries)
    }
