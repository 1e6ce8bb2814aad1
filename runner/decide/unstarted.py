"""A request that came back unstarted (a worker skipped it): because the run was paused
(`returned`: held for the resume), or because the run was failing (`not_started`), as
functions of the draft ``d``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner import states
from runner.decide import revert
from runner.decide.draft import Draft
from runner.decide.progress import end_attempt, schedule
from runner.decide.records import TaskState, error_dict


def returned(d: Draft, name: str, ended: TaskState, attempt: int, worker: str) -> None:
    """The request of ``attempt``, queued before the run was paused, came back unstarted:
    the task is PENDING again, held for the resume (at once if the run was resumed since),
    as the next attempt — its report took this attempt's result id — at no cost of a try."""
    d.set_task(name, ended.with_(status=states.PENDING, free_attempts=(ended.free_attempts or 0) + 1))
    d.hist(
        name,
        states.SCHEDULED,
        states.PENDING,
        attempt,
        worker=worker,
        note="returned unstarted: its request was queued before the run was paused",
    )
    resumed = d.run_status == states.RUNNING
    schedule(d, name, attempt + 1, note="sent again: the run was resumed meanwhile" if resumed else "")


def not_started(d: Draft, name: str, error: Mapping[str, Any], worker: str, paused: bool = False) -> None:
    """A worker skipped the attempt's request: the attempt ended without effect.

    Skipped because the run was paused (``paused``): the task goes back to wait for the
    resume (`returned`). Because the run was failing: SKIPPED while compensating (so its
    predecessors can be reverted); FAILED in a FAILED run, so that a retry of the run runs
    it again."""
    st = d.state(name)
    err = error_dict(error)
    attempt = int(st.attempt)
    ended = end_attempt(d, name, st)
    if paused and st.status == states.SCHEDULED and d.run_status in (states.PAUSED, states.RUNNING):
        returned(d, name, ended, attempt, worker)
        return
    if st.status == states.SCHEDULED and d.run_status in (
        states.REVERTING,
        states.REVERTED,
        states.CANCELLED,
    ):
        d.set_task(name, ended.with_(status=states.SKIPPED, finished_ms=d.at))
        d.hist(name, st.status, states.SKIPPED, attempt, worker=worker, note=err["message"])
    else:
        states.check_task(st.status, states.FAILED)
        new = ended.with_(status=states.FAILED, finished_ms=d.at, error=err, worker=worker)
        live = d.run_status in (states.RUNNING, states.PAUSED)
        if live:  # the run was retried while the report was on its way: no try spent
            new = new.with_(free_attempts=(st.free_attempts or 0) + 1)
        d.set_task(name, new)
        d.hist(name, st.status, states.FAILED, attempt, error_type=err["type"], error=err["message"])
        if live:
            schedule(
                d, name, attempt + 1, note="sent again: its request was skipped while the run was failed"
            )
            return
    if d.run_status == states.REVERTING:
        revert.revert_step(d)
