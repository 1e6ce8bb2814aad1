"""Load what other packages plug into ackflow (entry points), only when it is used, and find
ackflow's own ``workers`` package by where it is installed, not by name alone.

``workers`` is a common name: a project with its own ``workers`` package on ``sys.path``
(first on PYTHONPATH, or the working directory) would otherwise stand in for ackflow's. So
`load_workers` looks where ackflow installed it (next to ``runner``) and imports that one; if
the project's own package was imported already, it raises `PackageShadowedError` naming both.
Runner never imports ``workers`` by name (tests/unit/test_layers.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from runner.errors import ConfigError

WORKERS = "workers"


class PackageShadowedError(ConfigError):
    """Another package named like one of ackflow's was imported in its place."""

    def __init__(self, name: str, found: str, expected: Path) -> None:
        self.name, self.found, self.expected = name, found, expected
        super().__init__(
            f"a package named {name!r} at {found} shadows ackflow's own {name!r} package "
            f"(expected at {expected}); rename your package, or keep its directory off "
            "PYTHONPATH and out of the working directory ackflow imports from"
        )


def workers_dir() -> Path:
    """Where ackflow's ``workers`` package is installed: next to ``runner``."""
    return Path(__file__).resolve().parent.parent / WORKERS


def _inside(origin: str | None, directory: Path) -> bool:
    return origin is not None and Path(origin).resolve().parent == directory


def load_workers(submodule: str = "") -> ModuleType:
    """``workers`` (or ``workers.<submodule>``), from ackflow's installation."""
    ours = workers_dir()
    loaded = sys.modules.get(WORKERS)
    if loaded is not None and not _inside(getattr(loaded, "__file__", None), ours):
        raise PackageShadowedError(WORKERS, str(getattr(loaded, "__file__", None) or loaded), ours)
    if loaded is None:
        found = importlib.util.find_spec(WORKERS)
        if found is None or not _inside(found.origin, ours):
            _import_from(ours)  # another `workers` comes first on sys.path: take ours by location
    return importlib.import_module(f"{WORKERS}.{submodule}" if submodule else WORKERS)


def _import_from(directory: Path) -> None:
    init = directory / "__init__.py"
    spec = importlib.util.spec_from_file_location(WORKERS, init, submodule_search_locations=[str(directory)])
    if spec is None or spec.loader is None or not init.is_file():
        raise ConfigError(f"ackflow's worker package is missing (expected at {directory}); reinstall ackflow")
    module = importlib.util.module_from_spec(spec)
    sys.modules[WORKERS] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(WORKERS, None)
        raise


def load_entry_point(ep: EntryPoint) -> Any:
    """``ep.load()``, with ackflow's own ``workers`` package found first when it names it."""
    if ep.module.partition(".")[0] == WORKERS:
        load_workers()
    return ep.load()


class Unavailable(click.ClickException):
    """A plugin command that cannot be loaded; exit 2, as for bad usage."""

    exit_code = 2


class LazyCommand(click.Command):
    """A subcommand from an entry point, imported only when it runs or its help is shown, so
    that ``ackflow --help`` or ``ackflow run`` never fail because of another command's
    package; a command that cannot be loaded says why instead of a traceback."""

    def __init__(self, ep: EntryPoint) -> None:
        super().__init__(ep.name, add_help_option=False)
        self.ep = ep
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            try:
                self._real = load_entry_point(self.ep)
            except (ImportError, AttributeError, ConfigError) as e:
                raise Unavailable(f"the {self.ep.name!r} command cannot be loaded: {e}") from None
        return self._real

    def get_short_help_str(self, limit: int = 45) -> str:
        try:
            return self.real().get_short_help_str(limit)
        except click.ClickException as e:
            return f"(unavailable: {e.message})"[:limit]

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        return self.real().make_context(info_name, args, parent, **extra)
