"""Retry policies: attempts, exponential backoff with cap and jitter, error filters."""

from __future__ import annotations

import pytest

from runner.define.retry import Retry, policy
from runner.errors import FlowDefinitionError


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    r = Retry(attempts=10, delay=0.5, factor=2, max_delay=3, jitter=False)
    assert [r.delay_before(n, "k") for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_between_half_and_full_and_is_stable_per_attempt() -> None:
    r = Retry(attempts=10, delay=1.0, factor=2, max_delay=60)
    delays = [r.delay_before(3, f"run-{i}:t:3") for i in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # spread, not one value
    assert r.delay_before(3, "run-1:t:3") == r.delay_before(3, "run-1:t:3")  # recomputable


def test_attempts_count_every_try() -> None:
    r = Retry(attempts=3)
    assert r.allows(1, ["ValueError"]) and r.allows(2, ["ValueError"])
    assert not r.allows(3, ["ValueError"])


def test_on_matches_the_type_or_any_of_its_bases_by_name() -> None:
    r = Retry(attempts=5, on=[ConnectionError, "TimeoutError"])
    assert r.on == ("ConnectionError", "TimeoutError")
    assert r.allows(1, ["ConnectionResetError", "ConnectionError", "OSError", "Exception"])
    assert r.allows(1, ["TimeoutError"])
    assert not r.allows(1, ["ValueError", "Exception"])


def test_some_failures_are_never_retried() -> None:
    r = Retry(attempts=5)
    for t in ("PoisonMessage", "UnknownTaskError", "ProtocolError"):
        assert not r.allows(1, [t])
    assert r.allows(1, ["TaskTimeout"]) and r.allows(1, ["LeaseExpired"])


def test_round_trips_as_data() -> None:
    r = Retry(attempts=4, delay=0.2, factor=3, max_delay=9, jitter=False, on=[KeyError])
    assert Retry.from_data(r.to_data()) == r


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"delay": -1}, {"factor": 0.5}, {"max_delay": -2}, {"on": [42]}]
)
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(FlowDefinitionError):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_a_number_is_shorthand_for_attempts() -> None:
    assert policy(3) == Retry(attempts=3)
    assert policy(None) is None
    with pytest.raises(FlowDefinitionError):
        policy("3")  # type: ignore[arg-type]
