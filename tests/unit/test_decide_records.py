"""The stored task record: `TaskState` reads and writes exactly the msgpack map with short keys
that earlier releases wrote, so runs in flight survive an upgrade and the footprint holds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.decide.records import TaskProgress, TaskState, history_entry, history_record
from runner.protocol import pack, unpack

# Every key the engine has written, with a value of its stored type (a release's record).
OLD_RECORD: dict[str, Any] = {
    "s": "FAILED",
    "a": 3,
    "t": 1_700_000_000_000,
    "st": 1_700_000_000_100,
    "ft": 1_700_000_000_200,
    "w": "host-1:42",
    "d": 1,
    "ms": 12,
    "err": {"type": "ValueError", "message": "no", "traceback": "", "types": ["ValueError"]},
    "rerr": {"type": "OSError", "message": "x", "traceback": "", "types": ["OSError"]},
    "rt": 5,
    "rft": 6,
    "ra": 1,
    "ll": 2,
    "lk": 1_700_000_030_000,
    "wl": 2.5,
    "wt": 7,
    "retry_at": 1_700_000_001_000,
    "n": 4,
    "next": 2,
    "done": 1,
    "fresh": False,
    "rs": 1,
}


def test_every_stored_key_has_a_named_field_and_round_trips() -> None:
    state = TaskState.decode(pack(OLD_RECORD))
    assert state.other == {}  # nothing fell through to the unknown keys
    assert (state.status, state.attempt, state.free_attempts, state.retry_at_ms) == (
        "FAILED",
        3,
        1,
        OLD_RECORD["retry_at"],
    )
    assert (state.items, state.next_item, state.items_done, state.fresh) == (4, 2, 1, False)
    assert unpack(state.encode()) == OLD_RECORD
    assert len(state.encode()) == len(pack(OLD_RECORD))  # same footprint


def test_absent_fields_stay_absent_and_pending_is_the_default() -> None:
    assert TaskState.decode(None) == TaskState(status="PENDING", attempt=0)
    raw = pack({"s": "SCHEDULED", "a": 1, "t": 5})
    assert TaskState.decode(raw).encode() == raw  # the canonical order: byte for byte
    assert unpack(TaskState.decode(raw).with_(status="RUNNING", started_ms=6).encode()) == {
        "s": "RUNNING",
        "a": 1,
        "t": 5,
        "st": 6,
    }
    ended = TaskState.decode(pack({"s": "RUNNING", "a": 1, "lk": 9, "wl": 1.0, "retry_at": 3})).ended()
    assert unpack(ended.encode()) == {"s": "RUNNING", "a": 1}


def test_keys_of_a_newer_release_are_kept() -> None:
    raw = pack({"s": "RUNNING", "a": 1, "future": [1, 2]})
    state = TaskState.decode(raw).with_(worker="w")
    assert unpack(state.encode()) == {"s": "RUNNING", "a": 1, "w": "w", "future": [1, 2]}


_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.text(max_size=5), st.booleans(), st.floats(allow_nan=False)
)


@pytest.mark.fuzz
@given(
    st.dictionaries(st.sampled_from(sorted(OLD_RECORD)), _values),
    st.dictionaries(st.text(max_size=4), _values),
)
def test_any_stored_record_decodes_and_encodes_to_the_same_map(
    known: dict[str, Any], other: dict[str, Any]
) -> None:
    record = {"s": "RUNNING", "a": 1, **known, **{k: v for k, v in other.items() if k not in OLD_RECORD}}
    assert unpack(TaskState.decode(pack(record)).encode()) == record


def test_a_history_entry_round_trips_with_the_run_id_restored() -> None:
    raw = history_record(10, 2, "done:~:a:1", "task.succeeded", "a", "RUNNING", "SUCCESS", 1, {"worker": "w"})
    assert history_entry(raw, "r1") == {
        "at": 10,
        "t": 12,
        "event": "done:r1:a:1",
        "kind": "task.succeeded",
        "scope": "a",
        "from": "RUNNING",
        "to": "SUCCESS",
        "attempt": 1,
        "worker": "w",
    }


def test_a_progress_record_is_the_map_earlier_workers_wrote() -> None:
    """A worker of this release and a client of the last one (or the reverse) read each
    other's progress: the stored map keeps the keys a, f, m, t."""
    raw = TaskProgress(3, 0.4, "copied 400 of 1000 files", 1_700_000_000_000).encode()
    assert unpack(raw) == {"a": 3, "f": 0.4, "m": "copied 400 of 1000 files", "t": 1_700_000_000_000}
    old = pack({"a": 2, "f": 1, "m": "done", "t": 5})
    assert TaskProgress.decode(old) == TaskProgress(2, 1.0, "done", 5)
    assert TaskProgress.decode(pack({"a": 1, "f": 0.5})) == TaskProgress(1, 0.5, "", 0)
