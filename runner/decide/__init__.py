"""The decision core: what each event means, as a pure function from (the event, the fields
of its run read so far, the rules) to one `runner.store.Commit`.

- `view`: `View` (what was read), `Need` (read more and decide again), `Rules`, and
  `success_reads`, the reads of a task's success that the engine makes up front.
- `records`: the stored task state (`TaskState`), history entries and errors; the only code
  that knows their encoding.
- `draft`: `Draft`, the primitives of one decision (read through it, guard, write, history,
  timers, outbox) and its `commit`.
- `progress`: schedule, map, fail and retry, joins and advance, succeed, finish the run.
- `revert`: compensation, a completed task only after all its successors settled.
- `events`: one handler per event kind; `control`: cancel, pause, resume, retry of a run.

Nothing here does I/O, so every rule is testable without a network and is the same for local
and distributed runs. May import: the standard library, `runner.protocol`, `states`, `errors`,
`config`, `caps`, `conditions`, `retry`, `flows` (task specs), and the store's and broker's
contracts (`runner.store.base` for `Commit`, `runner.store.keys` for field names,
`runner.broker.base` for queue names). Never an adapter, the engine, the client or an operator
surface (tests/unit/test_layers.py enforces it).
"""

from __future__ import annotations

from collections.abc import Callable

from runner import protocol
from runner.decide import children, control, events
from runner.decide.draft import Draft
from runner.decide.events import COMPLETABLE
from runner.decide.records import NOT_STARTED, error_dict, history_entry
from runner.decide.view import META_FIELDS, Need, Rules, View, success_reads
from runner.protocol import Event
from runner.store.base import Commit

HANDLERS: dict[str, Callable[[Draft], None]] = {
    protocol.TASK_STARTED: events.decide_started,
    protocol.TASK_LEASED: events.decide_leased,
    protocol.TASK_WAITING: events.decide_waiting,
    protocol.TASK_COMPLETE: events.decide_complete,
    protocol.TASK_SUCCEEDED: events.decide_succeeded,
    protocol.TASK_FAILED: events.decide_failed,
    protocol.TASK_REVERTED: events.decide_reverted,
    protocol.TASK_REVERT_FAILED: events.decide_reverted,
    protocol.TIMER_FIRED: events.decide_timer,
    protocol.RUN_CANCEL: control.decide_cancel,
    protocol.RUN_PAUSE: control.decide_pause,
    protocol.RUN_RESUME: control.decide_resume,
    protocol.RUN_RETRY: control.decide_retry,
}


def decide(event: Event, view: View, rules: Rules) -> Commit:
    """The commit for one event; raises `Need` when the view lacks a field it depends on."""
    if event.kind == protocol.RUN_SUBMIT:
        return events.decide_submit(event, view, rules)
    d = Draft(event, view, rules)
    HANDLERS[event.kind](d)
    children.tell_parent(d)
    return d.commit()


__all__ = [
    "COMPLETABLE",
    "HANDLERS",
    "META_FIELDS",
    "NOT_STARTED",
    "Draft",
    "Need",
    "Rules",
    "View",
    "decide",
    "error_dict",
    "history_entry",
    "success_reads",
]
