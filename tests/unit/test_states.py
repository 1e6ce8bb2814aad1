"""The state machine: exactly the transitions written out here are allowed, every other is
refused. The expected tables are spelled out, not read from runner.states: a change of the
machine must change this test too."""

from __future__ import annotations

import itertools

import pytest

from runner import states

RUN_EDGES = {
    ("PENDING", "RUNNING"),
    ("PENDING", "CANCELLED"),
    ("RUNNING", "SUCCESS"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "REVERTING"),
    ("RUNNING", "PAUSED"),
    ("RUNNING", "CANCELLED"),
    ("PAUSED", "RUNNING"),  # resume
    ("PAUSED", "CANCELLED"),
    ("PAUSED", "FAILED"),  # a paused run still records what its running tasks do
    ("PAUSED", "REVERTING"),
    ("PAUSED", "SUCCESS"),
    ("REVERTING", "REVERTED"),
    ("REVERTING", "FAILED"),
    ("FAILED", "RUNNING"),  # an explicit retry
}
TASK_EDGES = {
    ("PENDING", "SCHEDULED"),
    ("PENDING", "SKIPPED"),
    ("SCHEDULED", "RUNNING"),
    ("SCHEDULED", "SUCCESS"),  # a result may overtake the best-effort "started" event
    ("SCHEDULED", "FAILED"),
    ("SCHEDULED", "SKIPPED"),
    ("SCHEDULED", "WAITING"),
    ("SCHEDULED", "PENDING"),  # its request came back unstarted: the run was paused
    ("RUNNING", "SUCCESS"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "WAITING"),
    ("RUNNING", "REVERTING"),  # a map node stopped by its run's failure: its elements' handler
    ("WAITING", "SUCCESS"),
    ("WAITING", "SKIPPED"),  # its run was cancelled while it waited
    ("WAITING", "FAILED"),
    ("FAILED", "SCHEDULED"),  # retry: a new attempt
    ("FAILED", "REVERTING"),  # its handler takes the failure of its body
    ("SUCCESS", "REVERTING"),
    ("REVERTING", "REVERTED"),
    ("REVERTING", "FAILED"),
}
RUN_STATES = {"PENDING", "RUNNING", "SUCCESS", "FAILED", "REVERTING", "REVERTED", "PAUSED", "CANCELLED"}
TASK_STATES = {
    "PENDING",
    "SCHEDULED",
    "RUNNING",
    "WAITING",
    "SUCCESS",
    "FAILED",
    "REVERTING",
    "REVERTED",
    "SKIPPED",
}


def test_the_state_names_are_these() -> None:
    assert set(states.RUN_STATES) == RUN_STATES
    assert set(states.TASK_STATES) == TASK_STATES


@pytest.mark.parametrize("old,new", sorted(itertools.product(RUN_STATES, repeat=2)))
def test_run_transitions(old: str, new: str) -> None:
    if (old, new) in RUN_EDGES:
        states.check_run(old, new)
    else:
        with pytest.raises(states.IllegalTransition):
            states.check_run(old, new)


@pytest.mark.parametrize("old,new", sorted(itertools.product(TASK_STATES, repeat=2)))
def test_task_transitions(old: str, new: str) -> None:
    if (old, new) in TASK_EDGES:
        states.check_task(old, new)
    else:
        with pytest.raises(states.IllegalTransition):
            states.check_task(old, new)


def test_terminal_states_go_nowhere() -> None:
    assert states.RUN_TERMINAL == {"SUCCESS", "FAILED", "REVERTED", "CANCELLED"}
    assert {old for old, _ in RUN_EDGES} == RUN_STATES - {"SUCCESS", "REVERTED", "CANCELLED"}
    assert {old for old, _ in TASK_EDGES} == TASK_STATES - {"REVERTED", "SKIPPED"}


@pytest.mark.parametrize(
    "action,allowed",
    [
        ("cancel", {"PENDING", "RUNNING", "PAUSED"}),
        ("pause", {"RUNNING"}),
        ("resume", {"PAUSED"}),
        ("retry", {"FAILED"}),
    ],
)
def test_control_actions_apply_to_these_run_statuses(action: str, allowed: set[str]) -> None:
    assert {s for s in RUN_STATES if states.control_allowed(action, s)} == allowed
    assert states.control_allowed(action, None) == ("PENDING" in allowed)  # no status yet: PENDING
