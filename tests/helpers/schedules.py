"""Schedules in end-to-end and chaos tests: add one through the CLI, read the scheduled times of
its runs from their ids, and wait for a condition of the store while the processes live."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from runner.client import Client
from tests.helpers.processes import Processes

EVERY_SECOND = "* * * * * *"  # croniter: a 6th field is seconds


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, procs: Processes) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        procs.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")
        time.sleep(0.1)  # polling the store for a condition, not timing an outcome


def fired(client: Client, name: str) -> list[int]:
    """The scheduled times (ms) of the schedule's runs, from their ids ``<name>:<time>``."""
    out = []
    for rid in client.store.list_runs(None, 10_000):
        sched, _, at = rid.partition(":")
        if sched == name:
            out.append(int(datetime.fromisoformat(at).timestamp() * 1000))
    return sorted(out)


def seconds(lo: int, hi: int) -> list[int]:
    return list(range(lo, hi + 1, 1000))


def add(procs: Processes, name: str, *options: str) -> None:
    out = procs.run("schedule", "add", name, "echo_flow", "-i", "text=hi", "--cron", EVERY_SECOND, *options)
    assert out.returncode == 0, out.stdout + out.stderr


def first_firing(client: Client, name: str) -> int:
    """The schedule's first scheduled time (an engine may have fired it, and advanced the
    schedule, before the test reads it)."""
    s = client.schedules.get(name)
    first = s.when.next_after(s.created_ms)
    assert first is not None
    return first


def one_run_per_second(client: Client, name: str, start: int, last: int, procs: Processes) -> list[int]:
    """Wait until the schedule's runs are exactly one per second from ``start`` on, through
    ``last`` at least (a firing in flight when it was paused may add the seconds after it:
    their submits were confirmed, so they arrive); a second missing for good fails."""

    def whole() -> bool:
        got = fired(client, name)
        return bool(got) and got[-1] >= last and got == seconds(start, got[-1])

    wait_until(whole, 20, f"one run per second of {name} from {start} through {last}", procs)
    return fired(client, name)
