"""The browser tests' fixtures: a page of headless Debian Chromium driven by Playwright, and
where screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots go to a temporary directory; `make screenshots` writes them to docs/ instead.
SHOTS = os.environ.get("ACKFLOW_SCREENSHOTS", "")


def _browser_available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(SHOTS) if SHOTS else tmp_path


@pytest.fixture
def page() -> Iterator[Any]:
    if not _browser_available():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(
                f"browser tests need {CHROMIUM} and playwright (make test installs them: .ci/setup.sh)"
            )
        pytest.skip(
            f"no {CHROMIUM} or playwright: make test installs them when it can (.ci/setup.sh, as root), "
            "or apt-get install chromium chromium-driver"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(20_000)
        yield pg
        browser.close()
