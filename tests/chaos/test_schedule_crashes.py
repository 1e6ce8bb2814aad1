"""An engine crashing at each step of a schedule's firing (runner.schedule.firing): after its
runs were submitted but before the schedule advanced, and after it advanced but before its
timer was forgotten. The other engine takes the timer over once its hold ends: every scheduled
time has exactly one run, none is missed."""

from __future__ import annotations

import pytest

from runner import faults
from runner.client import Client
from tests.helpers.processes import Processes
from tests.helpers.schedules import add, fired, first_firing, one_run_per_second, wait_until

pytestmark = pytest.mark.services


@pytest.mark.parametrize("point", faults.SCHEDULE_POINTS)
def test_an_engine_crashing_mid_firing_loses_and_repeats_no_firing(
    point: str, procs: Processes, client: Client
) -> None:
    victim = procs.engine(env={"ACKFLOW_FAULTS": f"{point}:crash"})
    procs.engine()
    worker = procs.worker()
    procs.until_logged(worker, "flow echo_flow registered")
    add(procs, "crashy", "--overlap", "allow", "--catchup", "all", "--catchup-window", "1m")
    start = first_firing(client, "crashy")
    assert victim.wait(timeout=30) == 137, procs.logs()  # it died firing, the timer claimed
    procs.retire(victim)
    assert f"fault point {point}: crash" in procs.logs()
    crashed = max(fired(client, "crashy"), default=start)
    # the survivor fires on once the dead engine's hold (10 s) is over
    wait_until(lambda: (client.schedules.get("crashy").last_ms or 0) >= crashed + 3000, 30, "firings", procs)
    client.schedules.pause("crashy")
    last = client.schedules.get("crashy").last_ms or 0
    one_run_per_second(client, "crashy", start, last, procs)
