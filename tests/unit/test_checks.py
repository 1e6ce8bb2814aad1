"""The chaos and crash-point checkers (tests/helpers/checks.py) fail on made-up histories
that break a guarantee: a checker that cannot fail proves nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

from runner.client import HistoryEntry
from tests.helpers import checks
from tests.helpers.checks import Execution

RID = "r1"


def entry(event: str, scope: str, old: str, new: str, t: int, attempt: int = 1, **extra: Any) -> HistoryEntry:
    return HistoryEntry(t - 5, event, "task.succeeded", scope, old, new, attempt, {"t": t, **extra})


def clean_history() -> list[HistoryEntry]:
    return [
        entry("submit", "run", "PENDING", "RUNNING", 100, 0),
        entry("submit", "a", "PENDING", "SCHEDULED", 100),
        entry("started-a", "a", "SCHEDULED", "RUNNING", 110, worker="h:7"),
        entry("result-a", "a", "RUNNING", "SUCCESS", 220),
        entry("result-a", "run", "RUNNING", "SUCCESS", 220, 0),
    ]


def test_a_clean_history_has_no_reapplied_event() -> None:
    history = clean_history()
    assert checks.reapplied_events(history) == {}
    assert [e for e, _ in checks.commits(history)] == ["submit", "started-a", "result-a"]


def test_an_event_applied_by_a_second_commit_is_caught_though_it_changed_nothing() -> None:
    # The second application finds the task finished: only a note, no state change, so the
    # transition counts are those of a clean run. Only the event id gives it away.
    history = clean_history() + [entry("result-a", "a", "SUCCESS", "SUCCESS", 900, note="ignored")]
    assert checks.transitions(history) == checks.transitions(clean_history())
    assert checks.reapplied_events(history) == {"result-a": 2}


def test_a_second_commit_of_an_event_in_the_same_millisecond_is_told_by_its_redelivered_flag() -> None:
    history = clean_history() + [entry("result-a", "a", "SUCCESS", "SUCCESS", 220, redelivered=True)]
    assert checks.reapplied_events(history) == {"result-a": 2}


def test_a_second_commit_of_an_event_after_another_event_is_caught() -> None:
    history = clean_history()
    history.insert(3, entry("submit", "a", "RUNNING", "RUNNING", 110, note="stale"))
    assert checks.reapplied_events(history) == {"submit": 2}


def kill(pid: int, t: int, role: str = "worker") -> dict[str, Any]:
    return {"kind": f"{role}_kill", "role": role, "pid": pid, "t_ms": t, "done_ms": t + 5, "exit": -9}


EXECS = {"r1:a:1": [Execution("r1:a:1", 7, 1_000), Execution("r1:a:1", 8, 3_000)]}
SCHEDULED = {"r1:a:1": 900}


def test_a_duplicate_execution_needs_a_fault_on_the_worker_that_ran_the_first() -> None:
    # A kill of another worker, in the window the old checker accepted, explains nothing.
    assert checks.unexplained_duplicates(EXECS, [kill(99, 1_500)], SCHEDULED) == [EXECS["r1:a:1"][1]]
    assert checks.unexplained_duplicates(EXECS, [], SCHEDULED) == [EXECS["r1:a:1"][1]]
    # A kill of the worker that ran it, before the repeat, does; after the repeat it does not.
    assert checks.unexplained_duplicates(EXECS, [kill(7, 1_500)], SCHEDULED) == []
    assert checks.unexplained_duplicates(EXECS, [kill(7, 3_500)], SCHEDULED) != []
    # A freeze of the worker that ran the repeat (it held the delivery through the freeze).
    freeze = {"kind": "freeze", "role": "worker", "pid": 8, "t_ms": 500, "done_ms": 505}
    assert checks.unexplained_duplicates(EXECS, [freeze], SCHEDULED) == []


def test_a_duplicate_execution_explained_by_an_engine_only_after_it_sent_the_request() -> None:
    assert checks.unexplained_duplicates(EXECS, [kill(5, 950, "engine")], SCHEDULED) == []
    assert checks.unexplained_duplicates(EXECS, [kill(5, 800, "engine")], SCHEDULED) != []
    assert checks.unexplained_duplicates(EXECS, [kill(5, 950, "engine")], {}) != []


def test_a_duplicate_execution_explained_by_a_service_restart_between_the_two() -> None:
    def restart(t: int) -> dict[str, Any]:
        return {"kind": "redis_restart", "t_ms": t, "done_ms": t + 400}

    assert checks.unexplained_duplicates(EXECS, [restart(2_000)], SCHEDULED) == []
    assert checks.unexplained_duplicates(EXECS, [restart(700)], SCHEDULED) == []  # down until 1,100
    assert checks.unexplained_duplicates(EXECS, [restart(300)], SCHEDULED) != []
    assert checks.unexplained_duplicates(EXECS, [restart(3_100)], SCHEDULED) != []


def test_executions_are_parsed_with_their_pid_oldest_first() -> None:
    got = checks.parse_executions([b"r1:a:1|8|3000", b"r1:a:1|7|1000", b"r1:b:2:revert|7|5"])
    assert got == {"r1:a:1": EXECS["r1:a:1"], "r1:b:2:revert": [Execution("r1:b:2:revert", 7, 5)]}
    assert checks.duplicate_executions(got) == 1


def test_scheduled_times_of_attempts_and_reverts() -> None:
    history = clean_history() + [entry("fail-b", "a", "SUCCESS", "REVERTING", 400)]
    assert checks.scheduled_times(RID, history) == {"r1:a:1": 100, "r1:a:1:revert": 400}


PLAN = {
    "engine_kills": 1,
    "worker_kills": 1,
    "freezes": 1,
    "drops": 1,
    "redis_restarts": 1,
    "broker_restarts": 1,
}


def all_faults() -> list[dict[str, Any]]:
    return [
        kill(5, 10, "engine"),
        kill(7, 20),
        {"kind": "freeze", "role": "worker", "pid": 8, "t_ms": 30, "resumed": True},
        {"kind": "drop", "role": "engine", "pid": 6, "t_ms": 40, "closed": True},
        {"kind": "redis_restart", "t_ms": 50},
        {"kind": "broker_restart", "t_ms": 60},
    ]


def test_planned_faults_that_did_not_happen_are_reported() -> None:
    assert checks.missed_faults(PLAN, all_faults(), None) == []
    killed_while_frozen = all_faults()
    killed_while_frozen[2]["resumed"] = "killed while frozen (exit -9)"
    assert checks.missed_faults(PLAN, killed_while_frozen, None) == []
    faults = all_faults()
    faults[3]["closed"] = False  # rabbitmqctl could not close it
    faults[1]["exit"] = "dead 1"  # the victim had died by itself
    faults[2]["resumed"] = False
    missed = checks.missed_faults(PLAN, faults[:-1], "not root")  # no broker restart
    assert missed == [
        "broker_restart: 0 of 1 planned (not root)",
        "worker_kill of pid 7: exit dead 1, not SIGKILL",
        "freeze of pid 8: never resumed",
        "drop of pid 6: no connection closed",
    ]


def test_recovery_counts_only_kills_whose_victim_held_work() -> None:
    histories = {
        RID: [
            entry("s", "a", "SCHEDULED", "RUNNING", 1_000, worker="h:7"),
            entry("s2", "a", "RUNNING", "RUNNING", 1_800, note="redelivered to h:8"),
            entry("res", "a", "RUNNING", "SUCCESS", 2_500),
            HistoryEntry(
                1_400, "ev", "task.started", "b", "SCHEDULED", "RUNNING", 1, {"t": 4_000, "redelivered": True}
            ),
        ]
    }
    faults = [kill(7, 1_500), kill(9, 1_600), kill(5, 1_500, "engine"), kill(5, 3_000, "engine")]
    got = checks.recovery_times(faults, histories)
    assert got == {
        "worker": [300.0],
        "engine": [1_000.0],
    }  # pid 9 held nothing; the redelivery came after the second engine kill
    # an engine redelivery after another engine fault is not counted for the first kill
    got = checks.recovery_times(
        [kill(5, 1_500, "engine"), {"kind": "drop", "role": "engine", "pid": 6, "t_ms": 2_000}], histories
    )
    assert got == {"worker": [], "engine": []}


def test_transitions_are_compared_with_their_counts_in_the_reference() -> None:
    once = ("a", "PENDING", "RUNNING", 1)
    twice = ("inner", "PENDING", "RUNNING", 1)  # an inner retry scope started over
    ref = Counter({once: 1, twice: 2})
    assert checks.compare_transitions(ref, Counter(ref)) == (0, 0, 0)
    assert checks.compare_transitions(ref, Counter({once: 2, twice: 2})) == (0, 1, 0)
    assert checks.compare_transitions(ref, Counter({once: 1, twice: 3})) == (0, 1, 0)
    assert checks.compare_transitions(ref, Counter({once: 1, twice: 1})) == (1, 0, 0)
    odd = ("b", "RUNNING", "FAILED", 1)
    assert checks.compare_transitions(ref, Counter({once: 1, twice: 2, odd: 2})) == (0, 1, 1)
