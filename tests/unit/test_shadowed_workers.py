"""A project with its own ``workers`` package (a common name) on the path: ackflow's commands
still work, and when the two packages truly collide the error names both (issue 12, item 7).

The CLI runs in a subprocess, from a project directory whose ``workers`` package comes
first: on PYTHONPATH, or as the working directory (``python -m runner.ops.cli`` puts it first).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "workers"

FLOWS = """
from runner import flow, task

@task(provides="y")
def inc(x: int) -> int:
    return x + 1

f = flow.linear("f", inc)
"""

USES_ITS_OWN = """
import workers.jobs
from runner import flow, task

@task(provides="z")
def dec(x: int) -> int:
    return x - 1

f = flow.linear("g", dec)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a `workers` package of its own, modules ackflow's also has included."""
    pkg = tmp_path / "workers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("def worker() -> None: ...\n")
    (pkg / "loop.py").write_text("Worker = None\n")
    (pkg / "jobs.py").write_text("def send() -> None: ...\n")
    (tmp_path / "myflows.py").write_text(FLOWS)
    (tmp_path / "usesown.py").write_text(USES_ITS_OWN)
    return tmp_path


def ackflow(project: Path, how: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACKFLOW_")}
    env["ACKFLOW_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:1//"  # nothing here needs one
    env["ACKFLOW_REDIS_URL"] = "redis://127.0.0.1:1/0"
    if how == "pythonpath":
        env["PYTHONPATH"] = os.pathsep.join([str(project), env.get("PYTHONPATH", "")])
        cmd = [str(Path(sys.executable).with_name("ackflow")), *args]
    else:  # the working directory, first on sys.path under `python -m`
        cmd = [sys.executable, "-m", "runner.ops.cli", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=60)


HOW = ["pythonpath", "cwd"]


@pytest.mark.parametrize("how", HOW)
def test_help_lists_every_command(project: Path, how: str) -> None:
    out = ackflow(project, how, "--help")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "worker     Execute tasks registered in MODULE" in out.stdout


@pytest.mark.parametrize("how", HOW)
def test_the_worker_command_is_ackflows(project: Path, how: str) -> None:
    out = ackflow(project, how, "worker", "--help")
    assert out.returncode == 0, out.stderr
    assert "--queue" in out.stdout and "--concurrency" in out.stdout


@pytest.mark.parametrize("how", HOW)
def test_a_local_run_works(project: Path, how: str) -> None:
    out = ackflow(project, how, "run", "myflows:f", "-i", "x=1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert '{"y": 2}' in out.stdout


@pytest.mark.parametrize("how", HOW)
def test_a_flow_importing_its_own_workers_package_names_both(project: Path, how: str) -> None:
    out = ackflow(project, how, "run", "usesown:f", "-i", "x=1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert f"at {project / 'workers' / '__init__.py'} shadows ackflow's own 'workers'" in out.stderr
    assert f"(expected at {OURS})" in out.stderr


@pytest.mark.parametrize("how", HOW)
def test_a_worker_module_importing_its_own_workers_package_says_so(project: Path, how: str) -> None:
    out = ackflow(project, how, "worker", "usesown")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "No module named 'workers.jobs'" in out.stderr
    assert f"the name 'workers' is taken by ackflow's worker package ({OURS / '__init__.py'})" in out.stderr
