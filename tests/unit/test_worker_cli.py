"""``ackflow worker -Q``: queue lists as Celery users write them, refused when malformed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from workers.cli import worker


def parse(*values: str) -> tuple[str, ...]:
    """The queues ``ackflow worker -Q v1 -Q v2 ... MODULE`` consumes."""
    args = [a for v in values for a in ("-Q", v)]
    queues: tuple[str, ...] = worker.make_context("worker", [*args, "some.module"]).params["queues"]
    return queues


@pytest.mark.parametrize(
    "values,queues",
    [
        (("a,b", "c"), ("a", "b", "c")),
        ((" a , b ",), ("a", "b")),
        (("io",), ("io",)),
        (("a,b", "b,a"), ("a", "b")),
        ((), ()),
    ],
)
def test_comma_lists_name_several_queues(values: tuple[str, ...], queues: tuple[str, ...]) -> None:
    assert parse(*values) == queues


@pytest.mark.parametrize(
    "value,why",
    [
        ("a,,b", "empty queue name"),
        ("a,", "empty queue name"),
        (" ", "empty queue name"),
        ("a b", "must start with a letter"),
        ("a;b", "must start with a letter"),
        ("x" * 200, "at most 128"),
    ],
)
def test_bad_queue_lists_exit_2_before_connecting(value: str, why: str) -> None:
    result = CliRunner().invoke(worker, ["-Q", "ok", "-Q", value, "some.module"])
    assert result.exit_code == 2, result.output
    assert "--queue" in result.output and why in result.output


def test_async_concurrency_is_an_option_with_a_default_shown_in_help() -> None:
    params = worker.make_context("worker", ["some.module"]).params
    assert params["async_concurrency"] == 16
    assert (
        worker.make_context("worker", ["--async-concurrency", "200", "m"]).params["async_concurrency"] == 200
    )
    result = CliRunner().invoke(worker, ["--help"])
    assert "--async-concurrency" in result.output and "async def" in result.output
    bad = CliRunner().invoke(worker, ["--async-concurrency", "0", "some.module"])
    assert bad.exit_code == 2 and "--async-concurrency" in bad.output
