"""What `ackflow status` shows of a run (issue 19, item 6): tasks in dependency order, the
run's inputs, who paused or cancelled it and why, durations that never read "0 ms" for work
that took time, and a waiting task of a cancelled run shown as skipped."""

from __future__ import annotations

from runner import protocol
from runner.client.render import run_dict, seconds, status_lines, took
from tests.helpers import flows
from tests.helpers.harness import Harness


def test_tasks_are_listed_in_dependency_order_with_the_runs_inputs() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain10, {"v0": 7})
    h.pump()
    info = h.client.status(rid)
    assert list(info.tasks) == [f"s{i}" for i in range(1, 11)]  # not s1, s10, s2, ...
    assert info.inputs == {"v0": 7}
    lines = status_lines(info)
    assert 'inputs {"v0": 7}' in lines
    assert [line.split()[0] for line in lines if line.startswith("  s")] == [f"s{i}" for i in range(1, 11)]
    assert run_dict(info)["inputs"] == {"v0": 7}


def test_a_pause_and_a_cancel_say_who_and_why() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    h.send(
        protocol.Event(
            protocol.RUN_PAUSE, "pause:1", rid, body={"by": "ops", "reason": "db upgrade"}, at_ms=1
        )
    )
    h.pump()
    info = h.client.status(rid)
    assert info.control is not None and (info.control["action"], info.control["reason"]) == (
        "pause",
        "db upgrade",
    )
    assert any(
        line.startswith("paused by ops at ") and line.endswith(": db upgrade") for line in status_lines(info)
    )
    h.send(
        protocol.Event(
            protocol.RUN_CANCEL, "cancel:1", rid, body={"by": "ops", "reason": "wrong input"}, at_ms=2
        )
    )
    h.pump()
    lines = status_lines(h.client.status(rid))
    assert any(line.startswith("cancelled by ops") and line.endswith(": wrong input") for line in lines)


def test_a_waiting_task_of_a_cancelled_run_is_skipped_not_waiting() -> None:
    h = Harness()
    rid = h.client.submit(flows.chain(2), {"v0": 0})
    h.pump()
    req = h.one()
    h.send(
        h.event(protocol.TASK_WAITING, req, protocol.waiting_id(rid, req.task, req.attempt), timeout_s=60.0)
    )
    h.pump()
    assert h.status(rid)[1]["s1"] == "WAITING"
    h.control(rid, protocol.RUN_CANCEL)
    assert h.status(rid) == ("CANCELLED", {"s1": "SKIPPED", "s2": "SKIPPED"})
    assert h.timers(rid) == []  # its waiting limit went with it
    note = [e.extra.get("note") for e in h.client.history(rid) if e.scope == "s1" and e.new == "SKIPPED"]
    assert note == ["run cancelled while it waited"]


def test_durations_read_as_people_expect() -> None:
    assert [seconds(ms) for ms in (0, 1, 850, 12_400, 200_000, 7_500_000)] == [
        "<1 ms",
        "1 ms",
        "850 ms",
        "12.4 s",
        "3 min 20 s",
        "2 h 5 min",
    ]
    assert took(0, None, 5) == "<1 ms"
    assert took(3, 1_000, 61_000) == "3 ms, waited 1 min 0 s"
    assert took(None, None, None) == ""
