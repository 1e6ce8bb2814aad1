"""Deprecated: import from runner.decide (this alias goes after one release).

The decision core moved into the package `runner.decide` (view, records, draft, progress,
revert, events, control). This re-exports the names the old module offered. A package rather
than a module, like `runner.keys`, so edits merged from branches that still change the old
file surface as conflicts to resolve into runner/decide/ rather than silently landing here.
"""

from runner.decide import HANDLERS, decide
from runner.decide.draft import WAIT_TIMER, Draft, outbox_entry, status_of
from runner.decide.events import (
    COMPLETABLE,
    decide_complete,
    decide_failed,
    decide_leased,
    decide_reverted,
    decide_started,
    decide_submit,
    decide_succeeded,
    decide_timer,
    decide_waiting,
    stale,
)
from runner.decide.progress import advance, finish_run, join_outcome, join_ready, not_started, succeed
from runner.decide.records import NOT_STARTED, RUN_MARK, TaskState, error_dict, history_entry
from runner.decide.view import META_FIELDS, NOT_TAKEN, Need, Rules, View, join_fields

__all__ = [
    "COMPLETABLE",
    "HANDLERS",
    "META_FIELDS",
    "NOT_STARTED",
    "NOT_TAKEN",
    "RUN_MARK",
    "WAIT_TIMER",
    "Draft",
    "Need",
    "Rules",
    "View",
    "advance",
    "decide",
    "decide_complete",
    "decide_failed",
    "decide_leased",
    "decide_reverted",
    "decide_started",
    "decide_submit",
    "decide_succeeded",
    "decide_timer",
    "decide_waiting",
    "error_dict",
    "finish_run",
    "history_entry",
    "join_fields",
    "join_outcome",
    "join_ready",
    "not_started",
    "outbox_entry",
    "stale",
    "status_of",
    "succeed",
    "TaskState",
]
