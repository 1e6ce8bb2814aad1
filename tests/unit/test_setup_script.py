"""A fresh machine (issue 12, item 8): `make test` sets up what it needs first, and the set-up
installs Debian's Chromium for the browser tests when it is missing and it can (root, apt).
The package manager is a stub here: nothing is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.processes import ROOT


def test_make_test_sets_up_the_machine_before_running_the_tests() -> None:
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert ".ci/setup.sh" in plan and "pytest" in plan, plan
    assert plan.index(".ci/setup.sh") < plan.index("pytest"), plan


def test_setup_installs_chromium_from_debian_packages_when_it_is_missing(tmp_path: Path) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for name, body in {"apt-get": f'echo "apt-get $*" >> {calls}', "id": "echo 0"}.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "ACKFLOW_CHROMIUM": str(tmp_path / "no-chromium"),
        "ACKFLOW_PROMTOOL": "true",  # present: not installed
        "ACKFLOW_TEST_BROKER_URL": "amqp://elsewhere",  # the services are someone else's
        "PY": sys.executable,
    }
    done = subprocess.run(
        ["bash", ".ci/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "apt-get update -qq",
        "apt-get install -y -qq chromium chromium-driver",
    ]
    assert "installing chromium and chromium-driver" in done.stderr
    assert "could not install chromium" in done.stderr  # the stub installed nothing: said, not hidden


def test_setup_installs_prometheus_from_debian_packages_when_promtool_is_missing(tmp_path: Path) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for name, body in {"apt-get": f'echo "apt-get $*" >> {calls}', "id": "echo 0"}.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "ACKFLOW_CHROMIUM": "/bin/sh",  # present: not installed
        "ACKFLOW_PROMTOOL": str(tmp_path / "no-promtool"),
        "ACKFLOW_TEST_BROKER_URL": "amqp://elsewhere",
        "PY": sys.executable,
    }
    done = subprocess.run(
        ["bash", ".ci/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends prometheus",
    ]
