"""No module of runner/ or workers/ over 450 lines (issue 13; STYLE.md "Shape": each module
small enough to read in one sitting). A module that outgrows it is split along one of its
responsibilities (as redis_listings.py and workers/skip.py were), not squeezed."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 450


def test_no_module_is_over_the_limit() -> None:
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
        for top in ("runner", "workers")
        for p in (ROOT / top).rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > LIMIT} == {}
