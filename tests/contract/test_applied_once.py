"""An event id applies once, whatever its commit holds: a commit that sends nothing (a state
change, a timer, a history note) must still be remembered, or its redelivery is decided and
applied again. The same contract on both stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from runner.config import Config
from runner.store import Commit, Store, keys
from runner.store.memory import MemoryStore
from runner.store.redis import RedisStore


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    cfg: Config = request.getfixturevalue("config")
    s = RedisStore(cfg)
    yield s
    s.close()


def test_a_commit_without_outbox_is_remembered_and_its_repeat_refused(store: Store) -> None:
    r = uuid.uuid4().hex
    first = Commit(r, "e1", writes={keys.TASKS: {"t": b"FAILED"}}, history=[b"failed"])
    assert store.commit(first).applied
    again = store.commit(Commit(r, "e1", writes={keys.TASKS: {"t": b"other"}}, history=[b"ignored"]))
    assert (again.outcome, again.unsent) == ("duplicate", {})
    assert store.read(r, {keys.TASKS: ["t"]}) == {keys.TASKS: [b"FAILED"]}
    assert store.history(r) == [b"failed"]
