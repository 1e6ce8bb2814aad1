"""The state tables: every transition not in them is refused."""

from __future__ import annotations

import itertools

import pytest

from runner import states


@pytest.mark.parametrize("old,new", list(itertools.product(states.RUN_STATES, repeat=2)))
def test_run_transitions(old: str, new: str) -> None:
    if new in states.RUN_TRANSITIONS[old]:
        states.check_run(old, new)
    else:
        with pytest.raises(states.IllegalTransition):
            states.check_run(old, new)


@pytest.mark.parametrize("old,new", list(itertools.product(states.TASK_STATES, repeat=2)))
def test_task_transitions(old: str, new: str) -> None:
    if new in states.TASK_TRANSITIONS[old]:
        states.check_task(old, new)
    else:
        with pytest.raises(states.IllegalTransition):
            states.check_task(old, new)


def test_tables_cover_every_state_and_terminal_runs_go_nowhere() -> None:
    assert set(states.RUN_TRANSITIONS) == set(states.RUN_STATES)
    assert set(states.TASK_TRANSITIONS) == set(states.TASK_STATES)
    for s in (states.SUCCESS, states.REVERTED, states.CANCELLED):
        assert not states.RUN_TRANSITIONS[s]
    assert not states.TASK_TRANSITIONS[states.SKIPPED]
