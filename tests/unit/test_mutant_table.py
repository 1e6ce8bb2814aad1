"""`make mutants` refuses a stale table: a mutant whose text is not found exactly once."""

from __future__ import annotations

import os

import pytest

from tests.mutants.run import check_table
from tests.mutants.table import MUTANTS, Mutant


@pytest.mark.skipif(
    os.environ.get("ACKFLOW_MUTANT_COPY") == "1", reason="in a mutant's copy its own text is gone, by design"
)
def test_the_real_table_matches_the_code() -> None:
    """A change that rewords a line a mutant plants its bug in must update the mutant in the
    same commit: `make test` says so, not the next `make mutants` (a reformatted lease
    publish in workers/loop.py left M28 stale)."""
    assert check_table(MUTANTS) == []


def test_a_mutant_whose_text_is_missing_or_repeated_is_refused() -> None:
    bad = (
        Mutant("X1", "runner/engine/loop.py", "no such text in the engine", "x", "missing"),
        Mutant("X2", "runner/engine/loop.py", "self.", "x", "repeated"),
        Mutant("X3", "runner/nowhere.py", "x", "y", "no file"),
        Mutant("X3", "runner/engine/loop.py", "class Engine:", "x", "duplicate id", ("tests/e2e",)),
        Mutant(
            "X4",
            "workers/skip.py",
            "    if d.delivery_count < delivery_limit - 1:",
            "        if True:",
            "bad indent",
        ),
    )
    problems = check_table(bad)
    assert [p.split(":")[0] for p in problems] == ["X1", "X2", "X3", "X3", "X3", "X3", "X4"]
    assert "does not compile" in problems[-1] and "does not compile" in problems[4]  # X3's "x" too
    assert "occurs 0 times" in problems[0] and "exactly once" in problems[0]
    assert "occurs" in problems[1] and "times" in problems[1]
    assert "does not exist" in problems[2]
    assert "duplicate id" in problems[3] and "not in the fast suites" in problems[5]
