"""The README's quick start works as written (its `shop.py`, its commands, local then
distributed), and the README documents every CLI option, public name and Client method."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest

import runner
from runner.client import Client
from runner.config import Config
from runner.ops.cli import load_plugins
from tests.helpers.processes import ACKFLOW, ROOT, Processes, cli_env

README = (ROOT / "README.md").read_text()
QUICK = README[README.index("## Quick start") : README.index("## Working on ackflow")]


def shop(tmp_path: Path) -> Path:
    [code] = re.findall(r"```python\n(.*?)```", QUICK, re.S)
    (tmp_path / "shop.py").write_text(code)
    return tmp_path


def commands() -> list[str]:
    return [
        line.split("#")[0].strip().rstrip("&").strip()
        for block in re.findall(r"```sh\n(.*?)```", QUICK, re.S)
        for line in block.splitlines()
        if line.startswith("ackflow ")
    ]


def ackflow(line: str) -> list[str]:
    """A documented ``ackflow ...`` command line, run with this interpreter."""
    return [*ACKFLOW, *line.split()[1:]]


def test_the_quick_start_runs_in_local_mode(tmp_path: Path) -> None:
    cwd = shop(tmp_path)
    [run] = [c for c in commands() if c.startswith("ackflow run ")]
    out = subprocess.run(ackflow(run), cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"receipt": "charged 42.0 for order 7"' in out.stdout


@pytest.mark.services
def test_the_quick_start_runs_distributed(procs: Processes, config: Config, tmp_path: Path) -> None:
    cwd = shop(tmp_path)
    env = {"PYTHONPATH": str(cwd)}
    engine, worker, submit = (
        next(c for c in commands() if c.startswith(f"ackflow {what}"))
        for what in ("engine", "worker", "submit")
    )
    procs.start(*engine.split()[1:], env=env)
    w = procs.start(*worker.split()[1:], env=env)
    procs.until_logged(w, "flow checkout registered")
    out = subprocess.run(
        ackflow(submit), cwd=tmp_path, env=cli_env(config), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr + procs.logs()
    assert 'result: {"receipt": "charged 42.0 for order 7"}' in out.stdout


def test_every_cli_option_is_documented() -> None:
    missing = []

    def walk(cmd: click.Command, path: str) -> None:
        for p in cmd.params:
            if isinstance(p, click.Option):
                missing.extend(f"{path} {o}" for o in p.opts if o.startswith("--") and o not in README)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")
            if cmd is not main and path.split()[-1] not in README:
                missing.append(path)

    main = load_plugins()
    walk(main, "ackflow")
    missing += [f"ackflow {name}" for name in main.commands if f"ackflow {name}" not in README]
    assert missing == []


def test_every_public_name_and_client_method_is_documented() -> None:
    names = [n for n in runner.__all__ if f"`{n}" not in README and f"{n}(" not in README]
    methods = [
        m for m in vars(Client) if not m.startswith("_") and f"{m}(" not in README and f".{m}" not in README
    ]
    assert (names, methods) == ([], [])
