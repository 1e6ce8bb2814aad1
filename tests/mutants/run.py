"""Run the mutants of `tests.mutants.table`: each alone, on its own copy of the tree.

    python -m tests.mutants.run              # all, MUTANTS_JOBS (default 2) at a time
    python -m tests.mutants.run M3 M11       # some (MUTANTS="M3 M11" through make)

First the unmutated copy must pass the fast suites (else every "kill" means nothing). Then,
for each mutant: copy runner/, workers/, tests/, compose/, .ci/, pyproject.toml, README.md and Makefile to a temporary directory,
replace the mutant's text there (the real checkout is never touched), and run pytest on the
copy (PYTHONPATH and the working directory point at it): its ``first`` tests, then, if none
failed, the fast suites — unit, contract and the crash points — with ``-x``, so a killed
mutant stops at its first failure. Prints mutant -> killing test (or SURVIVED); exits
non-zero if any survived, or if a mutant's text is not found exactly once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.mutants.table import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
FAST = ("tests/unit", "tests/contract", "tests/chaos/test_crash_points.py")
# compose: tests/unit/test_compose.py reads it; .ci: tests/unit/test_setup_script.py runs it
COPIED = ("runner", "workers", "tests", "compose", ".ci")
RUN_TIMEOUT_S = 900  # one pytest run on one copy; a hang past this counts as a kill, shown
TEST_TIMEOUT_S = 120  # per test (pytest-timeout): a mutant that hangs a test fails it
# a line of pytest's short test summary (node ids may hold spaces; captured log lines that
# start with "ERROR" come before the summary and never name a test file)
_FAILED = re.compile(r"^(FAILED|ERROR) (tests/.+?)(?: - .*)?$", re.M)


@dataclass
class Outcome:
    mutant: Mutant
    killer: str  # the first failing test, "" if it survived
    seconds: float
    detail: str = ""


def check_table(mutants: tuple[Mutant, ...]) -> list[str]:
    """Every mutant's text occurs exactly once in its file and the mutated Python compiles;
    ids are unique; ``first`` tests are inside the fast suites (so the baseline run covers
    them)."""
    problems = []
    seen: set[str] = set()
    for m in mutants:
        if m.id in seen:
            problems.append(f"{m.id}: duplicate id")
        seen.add(m.id)
        path = ROOT / m.file
        if not path.is_file():
            problems.append(f"{m.id}: {m.file} does not exist")
            continue
        text = path.read_text()
        n = text.count(m.old)
        if n != 1:
            problems.append(f"{m.id}: its text occurs {n} times in {m.file} (must be exactly once)")
        elif m.file.endswith(".py"):
            try:  # a mutant that does not compile is "killed" by every import: no evidence
                compile(text.replace(m.old, m.new, 1), m.file, "exec")
            except SyntaxError as e:
                problems.append(f"{m.id}: the mutated {m.file} does not compile ({e.msg}, line {e.lineno})")
        for t in m.first:
            if not any(t == f or t.startswith(f.rstrip("/") + "/") or t.startswith(f + "::") for f in FAST):
                problems.append(f"{m.id}: first test {t} is not in the fast suites {FAST}")
            elif not (ROOT / t.split("::")[0]).exists():
                problems.append(f"{m.id}: first test {t} does not exist")
    return problems


def copy_tree() -> Path:
    dest = Path(tempfile.mkdtemp(prefix="ackflow-mutant-"))
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in COPIED:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "Makefile"):  # read by the Dockerfile and setup tests
        shutil.copy2(ROOT / name, dest / name)
    return dest


def pytest(copy: Path, targets: list[str], log: Path) -> tuple[int | None, str]:
    """Run pytest on the copy; (exit code, None on a timeout; its output)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", ACKFLOW_MUTANT_COPY="1")
    cmd = [
        sys.executable,
        *("-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-rfE"),
        *("-o", f"timeout={TEST_TIMEOUT_S}"),
        *targets,
    ]
    with log.open("wb") as out:
        p = subprocess.Popen(
            cmd, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc: int | None = p.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = None
    return rc, log.read_text(errors="replace")


def _verdict(rc: int | None, output: str) -> tuple[str, str]:
    """(killer, detail) of a pytest run that did not pass."""
    summary = output.rpartition("short test summary info")[2]
    m = _FAILED.search(summary)
    if rc is None:
        return (m.group(2) if m else "(hung)"), f"pytest hung past {RUN_TIMEOUT_S} s"
    if m:
        return m.group(2), ""
    tail = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
    return f"(pytest exit {rc})", tail[0][:120]


def plant(copy: Path, m: Mutant) -> None:
    """Apply one mutant to a copy of the tree (its text must occur exactly once)."""
    path = copy / m.file
    text = path.read_text()
    assert text.count(m.old) == 1, m.id
    path.write_text(text.replace(m.old, m.new))


def run_mutant(m: Mutant | None) -> Outcome:
    """One mutant on its own copy (None: the unmutated baseline, which must pass)."""
    started = time.monotonic()
    copy = copy_tree()
    try:
        if m is not None:
            plant(copy, m)
        rounds = [list(m.first)] if m is not None and m.first else []
        rounds.append(list(FAST))
        for i, targets in enumerate(rounds):
            rc, output = pytest(copy, targets, copy / f"pytest-{i}.log")
            if rc == 0:
                continue
            if rc == 5 and i < len(rounds) - 1:
                return Outcome(
                    m or _BASE, "(no tests)", time.monotonic() - started, f"{targets} collected nothing"
                )
            killer, detail = _verdict(rc, output)
            return Outcome(m or _BASE, killer, time.monotonic() - started, detail)
        return Outcome(m or _BASE, "", time.monotonic() - started)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


_BASE = Mutant("M0", "-", "", "", "no mutation: the baseline")


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutant", "file", "what", "killed by", "s")]
    for o in outcomes:
        verdict = o.killer or "SURVIVED"
        if o.detail:
            verdict += f"  [{o.detail}]"
        rows.append((o.mutant.id, o.mutant.file, o.mutant.what[:70], verdict, f"{o.seconds:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4].rjust(4))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    wanted = set(argv) or set(os.environ.get("MUTANTS", "").split())
    problems = check_table(MUTANTS)
    if problems:
        print("the mutant table is stale:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    unknown = wanted - {m.id for m in MUTANTS}
    if unknown:
        print(f"no such mutants: {sorted(unknown)}", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if not wanted or m.id in wanted]
    jobs = max(1, int(os.environ.get("MUTANTS_JOBS", "2")))
    started = time.monotonic()
    print(f"baseline: the fast suites on an unmutated copy ({' '.join(FAST)})", flush=True)
    base = run_mutant(None)
    if base.killer:
        print(
            f"the unmutated tree fails: {base.killer} {base.detail}; no mutant can be judged", file=sys.stderr
        )
        return 2
    print(f"baseline passed in {base.seconds:.0f} s; {len(chosen)} mutants, {jobs} at a time", flush=True)
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(jobs) as pool:
        for o in pool.map(run_mutant, chosen):
            print(f"  {o.mutant.id:<4} {o.killer or 'SURVIVED'} ({o.seconds:.0f} s)", flush=True)
            outcomes.append(o)
    print()
    print(table(outcomes))
    survivors = [o.mutant.id for o in outcomes if not o.killer]
    total = time.monotonic() - started
    print(
        f"\n{len(outcomes) - len(survivors)} of {len(outcomes)} mutants killed; "
        f"baseline {base.seconds:.0f} s; total {total:.0f} s ({total / 60:.1f} min)"
    )
    if survivors:
        print(f"SURVIVED: {' '.join(survivors)} (a guarantee no test checks)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
