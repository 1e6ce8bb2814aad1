"""Checks that cannot run on this machine: skipped here, a failure under ``CI=true`` (a
check that switches itself off in CI proves nothing there)."""

from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, why: str) -> None:
    """Skip the test unless ``ok``; under CI fail it instead."""
    if not ok:
        if CI:
            pytest.fail(f"{why} (CI=true: a check that cannot run is a failure)")
        pytest.skip(why)


def can_check(ok: bool, why: str) -> bool:
    """Whether an optional assertion can run here (``ok``); under CI it must."""
    if not ok and CI:
        pytest.fail(f"{why} (CI=true: a check that cannot run is a failure)")
    return ok
