"""Schedules end to end (issue 17, item 5): engines and a worker started by the CLI, schedules
added with ``ackflow schedule add``. A cron schedule firing every second while one of two
engines is killed (SIGKILL) starts exactly one run per scheduled time and misses none; after all
engines were down, the catch-up policies decide which missed firings start."""

from __future__ import annotations

import signal
import time

from runner.client import Client
from runner.schedule.timing import iso
from tests.helpers.processes import Processes
from tests.helpers.schedules import add, fired, first_firing, one_run_per_second, seconds, wait_until


def test_a_cron_schedule_fires_once_per_second_through_an_engine_kill(
    procs: Processes, client: Client
) -> None:
    first_engine = procs.engine()
    procs.engine()
    worker = procs.worker()
    procs.until_logged(worker, "flow echo_flow registered")
    add(procs, "tick", "--overlap", "allow", "--catchup", "all", "--catchup-window", "1m")
    start = first_firing(client, "tick")
    wait_until(lambda: len(fired(client, "tick")) >= 4, 20, "four firings", procs)
    first_engine.send_signal(signal.SIGKILL)  # it may hold the schedule's timer: held ~10 s
    first_engine.wait(10)
    procs.retire(first_engine)
    until = max(time.time() * 1000 + 4000, start + 10_000)  # 4 s more, 10 s in all
    wait_until(lambda: (client.schedules.get("tick").last_ms or 0) >= until, 30, "more firings", procs)
    client.schedules.pause("tick")
    last = client.schedules.get("tick").last_ms or 0
    assert last - start >= 10_000  # ten seconds and more of firings
    # every scheduled time from the first to the last has its run, once (their submits were
    # confirmed before the schedule advanced, so they are all on their way)
    got = one_run_per_second(client, "tick", start, last, procs)
    assert got[-1] <= time.time() * 1000  # and nothing off the schedule or ahead of time


def test_catch_up_after_every_engine_was_down(procs: Processes, client: Client) -> None:
    """``all`` starts every firing missed while no engine ran; ``latest`` only the last."""
    engine = procs.engine()
    worker = procs.worker()
    procs.until_logged(worker, "flow echo_flow registered")
    add(procs, "all", "--overlap", "allow", "--catchup", "all", "--catchup-window", "1h")
    add(procs, "latest", "--overlap", "allow", "--catchup", "latest")
    wait_until(
        lambda: len(fired(client, "all")) >= 2 and len(fired(client, "latest")) >= 2, 20, "firings", procs
    )
    engine.send_signal(signal.SIGTERM)
    assert engine.wait(30) is not None
    procs.retire(engine)
    down = {n: client.schedules.get(n).last_ms or 0 for n in ("all", "latest")}
    # no engine: the firings come due and pass, unstarted
    wait_until(lambda: client.schedules.get("all").next_ms + 5000 < time.time() * 1000, 20, "5 missed", procs)  # type: ignore[operator]
    assert fired(client, "all")[-1] == down["all"]
    restarted = int(time.time() * 1000)
    procs.engine()
    wait_until(
        lambda: all((client.schedules.get(n).last_ms or 0) >= restarted - 1000 for n in down),
        30,
        "catch-up",
        procs,
    )
    client.schedules.pause("all")
    client.schedules.pause("latest")
    last = {n: client.schedules.get(n).last_ms or 0 for n in down}
    all_start = first_firing(client, "all")
    one_run_per_second(client, "all", all_start, last["all"], procs)  # none missed while down
    wait_until(lambda: last["latest"] in fired(client, "latest"), 15, "latest's run", procs)
    latest = fired(client, "latest")
    missed = seconds(down["latest"] + 1000, restarted - 2000)
    assert len(missed) >= 4 and not set(missed) & set(latest), [iso(t) for t in latest]  # skipped
    after = [t for t in latest if t > down["latest"]]
    assert after and after[0] >= restarted - 1000  # the catch-up: the latest firing due, once
