"""Retries, timeouts, compensation, joins, progress and run control — each end to end, both
on real RabbitMQ + Redis (engine and worker processes started through the CLI) and in local
mode (one process), with the same assertions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runner.client import Client, HistoryEntry, RunInfo
from runner.config import Config
from runner.errors import RunStateError
from runner.local import LocalRuntime
from runner.store import keys
from tests.helpers import semantic_flows as sf
from tests.helpers.processes import Processes, until_run

pytestmark = pytest.mark.services

# Long tasks take a lease at once and renew it every 1/3 s: heartbeats (progress, cancel)
# are quick to observe, and a lost lease is noticed within a second.
FAST_LEASES = {"ACKFLOW_ACK_AFTER_S": "0", "ACKFLOW_LEASE_S": "1"}


class Env:
    """One way of running flows: `client` plus a wait that fails fast with the logs."""

    def __init__(self, mode: str, client: Client, procs: Processes | None = None) -> None:
        self.mode, self.client, self.procs = mode, client, procs

    def wait(self, run_id: str, timeout_s: float = 60) -> RunInfo:
        if self.procs is not None:
            return self.procs.wait(self.client, run_id, timeout_s)  # type: ignore[no-any-return]
        return self.client.wait(run_id, timeout_s)

    def until(self, run_id: str, check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
        """Wait (on the run's change notices, never a sleep) until ``check()`` holds."""
        until_run(self.client, run_id, check, what, self.procs, timeout_s)

    def history(self, run_id: str) -> list[HistoryEntry]:
        return self.client.history(run_id)

    def task(self, run_id: str, name: str) -> Any:
        """The task's `TaskInfo`, or None while the run is not created yet."""
        from runner.errors import RunNotFound

        try:
            return self.client.status(run_id).tasks.get(name)
        except RunNotFound:
            return None

    def task_is(self, run_id: str, name: str, status: str) -> bool:
        t = self.task(run_id, name)
        return t is not None and t.status == status


@pytest.fixture(params=["distributed", "local"])
def env(request: pytest.FixtureRequest, config: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)  # the tasks' gates and logs
    if request.param == "local":
        with LocalRuntime(config.with_(ack_after_s=0, lease_s=1)) as rt:
            yield Env("local", rt.client)
        return
    procs: Processes = request.getfixturevalue("procs")
    client: Client = request.getfixturevalue("client")
    procs.engine(env=FAST_LEASES)
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "4", env=FAST_LEASES)
    yield Env("distributed", client, procs)


def key(name: str) -> str:
    return f"ackflow-test:{name}:{uuid.uuid4().hex}"


def transitions(h: list[HistoryEntry], scope: str) -> list[tuple[str, str, int]]:
    return [(e.old, e.new, e.attempt) for e in h if e.scope == scope and e.old != e.new]


# --- retries ---------------------------------------------------------------------------


def test_retry_with_backoff_until_success(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.retry_flow, {"fail_times": 2, "log": log})
    info = env.wait(rid)
    assert info.status == "SUCCESS", info
    assert info.result == {"flaky_out": "ok after 3"}
    assert info.tasks["flaky"].attempt == 3
    assert sf.recorded(log) == ["flaky:1", "flaky:2", "flaky:3"]
    h = env.history(rid)
    assert transitions(h, "flaky") == [
        ("PENDING", "SCHEDULED", 1),
        ("SCHEDULED", "RUNNING", 1),
        ("RUNNING", "FAILED", 1),
        ("FAILED", "SCHEDULED", 2),
        ("SCHEDULED", "RUNNING", 2),
        ("RUNNING", "FAILED", 2),
        ("FAILED", "SCHEDULED", 3),
        ("SCHEDULED", "RUNNING", 3),
        ("RUNNING", "SUCCESS", 3),
    ]
    notes = [e.extra.get("note", "") for e in h if e.new == "FAILED"]
    assert notes[0].startswith("retry 2 of 4 in ") and notes[1].startswith("retry 3 of 4 in ")
    # The backoff is a timer in Redis: the retry is a separate, later event.
    retried = [e for e in h if e.old == "FAILED" and e.new == "SCHEDULED"]
    assert all(e.kind == "timer.fired" for e in retried)


def test_retries_exhausted_fail_the_run(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.retry_flow, {"fail_times": 9, "log": log})
    info = env.wait(rid)
    assert info.status == "FAILED"
    assert info.tasks["flaky"].attempt == 4
    assert info.error is not None and info.error["type"] == "ConnectionResetError"
    assert sf.recorded(log) == [f"flaky:{a}" for a in (1, 2, 3, 4)]


def test_only_listed_exception_types_are_retried(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.picky_flow, {"log": log})
    info = env.wait(rid)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "ValueError"
    assert sf.recorded(log) == ["picky:1"]


# --- timeouts --------------------------------------------------------------------------


def test_task_timeout_fails_the_attempt_retries_and_fences_the_late_result(env: Env) -> None:
    gate = key("gate")
    rid = env.client.submit(sf.timeout_flow, {"gate_key": gate})
    info = env.wait(rid)
    assert info.status == "SUCCESS"
    assert info.result == {"slow_out": "fresh-2"}
    h = env.history(rid)
    timed_out = [e for e in h if e.new == "FAILED"]
    assert [(e.attempt, e.extra["error_type"]) for e in timed_out] == [(1, "TaskTimeout")]
    sf.open_gate(gate)  # attempt 1 now returns, long after its timeout

    def fenced() -> bool:
        return any(
            "fenced: attempt 1 is not the current attempt 2" in e.extra.get("note", "")
            for e in env.history(rid)
        )

    env.until(rid, fenced, "the late result of attempt 1 to be fenced")
    assert env.client.status(rid).result == {"slow_out": "fresh-2"}


def test_run_deadline_fails_the_run(env: Env) -> None:
    gate = key("gate")
    rid = env.client.submit(sf.deadline_flow, {"gate_key": gate}, timeout_s=0.5)
    info = env.wait(rid)
    sf.open_gate(gate)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "RunTimeout"
    assert "within 0.5 s" in info.error["message"]


# --- compensation ----------------------------------------------------------------------


def test_failed_run_reverts_completed_tasks_in_reverse_order(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.order_flow, {"item": "A", "log": log, "fail_ship": True})
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {"reserve": "REVERTED", "charge": "REVERTED", "ship": "FAILED"}
    # Each handler ran once, got the task's inputs and result, successors first.
    assert sf.recorded(log) == ["reserve", "charge", "ship", "refund:ch-res-A", "unreserve:res-A"]
    h = env.history(rid)
    assert [e.scope for e in h if e.new == "REVERTED" and e.scope != "run"] == ["charge", "reserve"]
    assert transitions(h, "run") == [
        ("PENDING", "RUNNING", 0),
        ("RUNNING", "REVERTING", 0),
        ("REVERTING", "REVERTED", 0),
    ]
    assert info.error is not None and info.error["task"] == "ship"


def test_failed_revert_fails_the_run_with_the_revert_error(env: Env) -> None:
    log = key("log")
    inputs = {"item": "B", "log": log, "fail_ship": True, "fail_refund": True}
    rid = env.client.submit(sf.order_flow, inputs)
    info = env.wait(rid)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["type"] == "RevertFailed"
    assert "payment provider refused the refund" in info.error["message"]
    assert info.error["cause"]["task"] == "ship"
    assert sf.describe(info) == {"reserve": "SUCCESS", "charge": "FAILED", "ship": "FAILED"}
    assert info.tasks["charge"].revert_error is not None
    assert "unreserve:res-B" not in sf.recorded(log)  # compensation stops at the failure


# --- compensation as TaskFlow defines it (issue 16, item 2) --------------------------------


def data_names(env: Env, rid: str) -> set[str]:
    return set(env.client.store.read_all(rid, keys.DATA))


def test_the_failed_task_is_reverted_with_its_failure_before_its_predecessors(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.failed_ship_flow, {"item": "A", "log": log})
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {"reserve": "REVERTED", "charge": "REVERTED", "ship_partly": "REVERTED"}
    assert sf.recorded(log) == [
        "reserve",
        "charge",
        "ship-partly",
        "unship:None:RuntimeError:courier lost the parcel:1",  # no result; the failure
        "refund:ch-res-A",
        "unreserve:res-A",
    ]
    h = env.history(rid)
    assert [e.scope for e in h if e.new == "REVERTED" and e.scope != "run"] == [
        "ship_partly",
        "charge",
        "reserve",
    ]
    assert info.error is not None and info.error["task"] == "ship_partly"
    assert info.tasks["ship_partly"].error is not None  # what failed stays shown
    # (b) the reverted results are gone from the run's data; the inputs stay
    assert data_names(env, rid) == {"item", "log"}


def test_a_map_handler_runs_per_element_that_succeeded_last_first(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.seats_flow, {"item": "S", "seats": [7, 8, 9], "log": log})
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {"reserve": "REVERTED", "book": "REVERTED", "pay_seats": "FAILED"}
    assert sf.recorded(log) == [
        "reserve",
        "book:7",
        "book:8",
        "book:9",
        "unbook:9:seat-9",
        "unbook:8:seat-8",
        "unbook:7:seat-7",
        "unreserve:res-S",
    ]
    h = env.history(rid)
    assert [e.scope for e in h if e.new == "REVERTED" and e.scope != "run"] == [
        "book[2]",
        "book[1]",
        "book[0]",
        "book",
        "reserve",
    ]
    left = data_names(env, rid)
    assert not {"reserved", "bookings", "book[0]", "book[1]", "book[2]"} & left, left


def test_successful_run_reverts_nothing(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.order_flow, {"item": "C", "log": log, "fail_ship": False})
    info = env.wait(rid)
    assert info.status == "SUCCESS"
    assert sf.recorded(log) == ["reserve", "charge", "ship"]


def test_a_successor_still_running_is_reverted_before_its_predecessor(env: Env) -> None:
    """src -> (left, right) -> join: left fails while right runs; right ends, then is
    reverted, and only then src (successors before predecessors)."""
    log, gate = key("log"), key("gate")
    rid = env.client.submit(sf.diamond_flow, {"log": log, "gate_key": gate})

    def reverting() -> bool:
        info = env.client.status(rid) if env.task(rid, "dia_left") else None
        return info is not None and info.status == "REVERTING"

    env.until(rid, reverting, "left to fail and the run to revert")
    info = env.client.status(rid)
    # right still runs: src, whose output it consumes, must not be reverted under it
    # (its "started" event may not be applied yet: SCHEDULED or RUNNING, its body runs)
    assert info.tasks["dia_right"].status in ("SCHEDULED", "RUNNING"), info
    assert info.tasks["dia_src"].status == "SUCCESS", info
    sf.open_gate(f"{gate}:right")
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {
        "dia_join": "PENDING",
        "dia_left": "FAILED",
        "dia_right": "REVERTED",
        "dia_src": "REVERTED",
    }
    assert sf.recorded(log) == ["src", "right", "left", "undo:right", "undo:src"]
    h = env.history(rid)
    assert [e.scope for e in h if e.new == "REVERTED" and e.scope != "run"] == ["dia_right", "dia_src"]
    assert info.error is not None and info.error["task"] == "dia_left"


def test_a_queued_successor_of_a_failing_run_never_starts(
    procs: Processes, client: Client, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """q_next is queued behind a busy one-slot worker when the run fails: the worker skips it
    (it never runs), and q_src, whose output it would have read, is reverted only then."""
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)
    log, gate = key("log"), key("gate")
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "1", "--max-long", "0")
    env = Env("distributed", client, procs)
    rid = client.submit(sf.queued_flow, {"log": log, "gate_key": gate})

    # Only now the worker of "other": q_src, then q_bad, must not run before hog holds the slot
    # (started together, the second worker could fail the run before the first took hog).
    env.until(rid, lambda: env.task_is(rid, "hog", "RUNNING"), "hog to hold the one-slot worker")
    procs.start("worker", "tests.helpers.semantic_flows", "-Q", "other")

    def reverting() -> bool:
        info = client.status(rid) if env.task(rid, "q_bad") else None
        return info is not None and info.status == "REVERTING"

    env.until(rid, reverting, "q_bad to fail the run")
    info = client.status(rid)
    assert (info.tasks["q_next"].status, info.tasks["q_src"].status) == ("SCHEDULED", "SUCCESS"), info
    sf.open_gate(gate)  # hog ends; the worker takes q_next's request and finds the run failing
    info = env.wait(rid)
    assert info.status == "REVERTED", info
    assert sf.describe(info) == {
        "hog": "SUCCESS",
        "q_bad": "FAILED",
        "q_next": "SKIPPED",
        "q_src": "REVERTED",
    }
    assert "next" not in sf.recorded(log)  # its body never ran
    assert sf.recorded(log) == ["src", "undo:src"]
    h = env.history(rid)
    skipped = next(i for i, e in enumerate(h) if e.scope == "q_next" and e.new == "SKIPPED")
    undo = next(i for i, e in enumerate(h) if e.scope == "q_src" and e.new == "REVERTING")
    assert skipped < undo, [(e.scope, e.old, e.new, e.extra) for e in h]
    assert "not started" in h[skipped].extra.get("note", "")


# --- joins -----------------------------------------------------------------------------


def test_join_of_two_starts_after_two_predecessors(env: Env) -> None:
    gate = key("gate")
    rid = env.client.submit(sf.join_two_flow, {"x": 10, "gate_key": gate})
    info = env.wait(rid)  # gated3 still runs: the join needed only two
    assert info.status == "SUCCESS"
    assert info.result == {"joined": [11, 12]}
    assert info.tasks["gated3"].status in ("SCHEDULED", "RUNNING")  # still at work
    sf.open_gate(gate)
    env.until(rid, lambda: env.task_is(rid, "gated3", "SUCCESS"), "gated3 to finish")
    assert env.client.status(rid).result == {"joined": [11, 12]}
    h = env.history(rid)
    assert sum(1 for e in h if e.scope == "count_inputs" and e.old != e.new and e.new == "SCHEDULED") == 1


def test_join_any_starts_after_the_first_predecessor(env: Env) -> None:
    gate = key("gate")
    rid = env.client.submit(sf.join_any_flow, {"x": 10, "gate_key": gate})
    info = env.wait(rid)
    sf.open_gate(gate)
    assert info.status == "SUCCESS"
    joined = info.result["joined"] if info.result else []
    # the request's inputs are fixed when the join fires, on the first predecessor's result
    assert joined in ([11], [12]), joined


# --- progress and control ----------------------------------------------------------------


def test_progress_is_visible_while_a_long_task_runs(env: Env) -> None:
    gate, log = key("gate"), key("log")
    rid = env.client.submit(sf.long_flow, {"gate_key": gate, "log": log})
    env.until(
        rid, lambda: getattr(env.task(rid, "long_once"), "progress", None) == (0.5, "halfway"), "progress"
    )
    if env.procs is not None:
        out = env.procs.run("status", rid)
        assert "long_once" in out.stdout and "50% halfway" in out.stdout, out.stdout + out.stderr
    sf.open_gate(gate)
    info = env.wait(rid)
    assert info.status == "SUCCESS" and info.result == {"long_out": "late-1"}
    assert sf.recorded(log) == ["long:1"]  # the lease held: one attempt
    assert info.tasks["long_once"].progress is None  # shown only while running


def test_pause_holds_new_tasks_and_resume_releases_them(env: Env) -> None:
    gate = key("gate")
    rid = env.client.submit(sf.pause_flow, {"x": 1, "gate_key": gate})
    env.until(rid, lambda: env.task_is(rid, "gated_step", "RUNNING"), "gated_step to run")
    assert env.client.pause(rid, "maintenance") == "PAUSED"
    sf.open_gate(gate)

    def held() -> bool:
        return any(e.scope == "after_gate" and "held" in e.extra.get("note", "") for e in env.history(rid))

    env.until(rid, held, "after_gate to be held")
    info = env.client.status(rid)
    assert info.status == "PAUSED"
    assert sf.describe(info) == {"gated_step": "SUCCESS", "after_gate": "PENDING"}
    assert env.client.resume(rid) == "RUNNING"
    info = env.wait(rid)
    assert info.status == "SUCCESS" and info.result == {"g2": 3}
    runs = transitions(env.history(rid), "run")
    assert [r[1] for r in runs] == ["RUNNING", "PAUSED", "RUNNING", "SUCCESS"]


@pytest.fixture(params=["distributed", "local"])
def one_slot(
    request: pytest.FixtureRequest, config: Config, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    """An `Env` whose worker runs one task at a time and takes no lease early: a second
    request waits in the queue (the broker's, or local mode's) until the first ends."""
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)
    if request.param == "local":
        with LocalRuntime(config, concurrency=1) as rt:
            yield Env("local", rt.client)
        return
    procs: Processes = request.getfixturevalue("procs")
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "1", "--max-long", "0")
    yield Env("distributed", request.getfixturevalue("client"), procs)


def test_pause_holds_a_request_already_queued_and_resume_releases_it(one_slot: Env) -> None:
    env, gate, log = one_slot, key("gate"), key("log")
    rid = env.client.submit(sf.held_flow, {"items": [1, 2], "gate_key": gate, "log": log})

    def states() -> list[str]:  # of the map's elements, from the history (status hides them)
        last = {e.scope: e.new for e in env.history(rid) if e.scope.startswith("gated_record[")}
        return sorted(last.values())

    env.until(rid, lambda: states() == ["RUNNING", "SCHEDULED"], "one element to run, one queued")
    assert env.client.pause(rid, "maintenance") == "PAUSED"
    sf.open_gate(gate, times=2)

    def returned() -> bool:
        return any("returned unstarted" in e.extra.get("note", "") for e in env.history(rid))

    env.until(rid, lambda: returned() and "SUCCESS" in states(), "the queued request to come back")
    assert len(sf.recorded(log)) == 1  # the queued one did not run while paused
    assert env.client.status(rid).status == "PAUSED"
    assert states() == ["PENDING", "SUCCESS"]
    assert env.client.resume(rid) == "RUNNING"
    info = env.wait(rid)
    assert info.status == "SUCCESS" and info.result == {"passed": [1, 2]}
    assert sorted(sf.recorded(log)) == ["1", "2"]  # each body once
    back = next(e for e in env.history(rid) if "returned unstarted" in e.extra.get("note", ""))
    sent = [e.attempt for e in env.history(rid) if e.scope == back.scope and e.new == "SCHEDULED"]
    assert sent == [back.attempt, back.attempt + 1]  # the report took the first attempt's id


def test_a_child_runs_result_is_its_parent_tasks_result(env: Env) -> None:
    rid = env.client.submit(sf.parent_flow, {"numbers": [1, 2, 3]})
    info = env.wait(rid)
    assert info.status == "SUCCESS" and info.result == {"report": "total 6"}, info
    child = info.tasks["start_summing"].child
    assert child is not None
    kid = env.client.status(child)
    assert kid.status == "SUCCESS" and kid.result == {"child_total": 6}
    assert kid.parent == (rid, "start_summing", 1)
    notes = [e.extra.get("note", "") for e in env.history(rid) if e.scope == "start_summing"]
    assert f"waiting for its child run {child}" in notes


def test_cancelling_a_parent_cancels_its_child(env: Env) -> None:
    gate = key("gate")
    rid = env.client.submit(sf.parent_flow, {"numbers": [1], "gate_key": gate})
    env.until(rid, lambda: env.task_is(rid, "start_summing", "WAITING"), "the child run to start")
    child = env.client.status(rid).tasks["start_summing"].child
    assert child is not None
    env.until(child, lambda: env.task_is(child, "child_sum", "RUNNING"), "the child's task to run")
    assert env.client.cancel(rid, "not needed") == "CANCELLED"
    kid = env.wait(child)
    assert kid.status == "CANCELLED"
    sf.open_gate(gate)  # the child's task ends; its result changes nothing
    assert env.client.status(rid).status == "CANCELLED"


def test_cancel_reaches_a_running_task_through_its_heartbeats(env: Env) -> None:
    log = key("log")
    rid = env.client.submit(sf.cancel_flow, {"log": log})
    env.until(
        rid,
        lambda: getattr(env.task(rid, "until_cancelled"), "progress", None) is not None,
        "the task to run",
    )
    assert env.client.cancel(rid, "not needed") == "CANCELLED"
    env.until(rid, lambda: sf.recorded(log) == ["saw-cancel"], "the task to see the cancellation")
    info = env.client.status(rid)
    assert info.status == "CANCELLED" and info.result is None
    with pytest.raises(RunStateError, match="cannot cancel"):
        env.client.cancel(rid)


def test_retry_of_a_failed_run_keeps_completed_results(env: Env) -> None:
    log, flag = key("log"), key("flag")
    rid = env.client.submit(sf.steps_flow, {"x": 1, "log": log, "flag": flag})
    info = env.wait(rid)
    assert info.status == "FAILED" and info.error is not None and info.error["task"] == "step2"
    sf.record(flag, "set")
    assert env.client.retry(rid) == "RUNNING"
    info = env.wait(rid)
    assert info.status == "SUCCESS" and info.result == {"s3": 4}
    assert sf.recorded(log) == ["step1", "step2", "step2", "step3"]
    assert {n: t.attempt for n, t in info.tasks.items()} == {"step1": 1, "step2": 2, "step3": 1}
    with pytest.raises(RunStateError, match="cannot retry"):
        env.client.retry(rid)


# --- control with nothing but an engine (or nothing at all) online ------------------------


def test_cancel_with_no_worker_online_skips_the_queued_tasks(
    procs: Processes, client: Client, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)
    log, flag = key("log"), key("flag")
    procs.engine()
    rid = client.submit(sf.steps_flow, {"x": 1, "log": log, "flag": flag})
    env = Env("distributed", client, procs)
    env.until(rid, lambda: env.task_is(rid, "step1", "SCHEDULED"), "step1's request to be queued")
    assert client.pause(rid) == "PAUSED"
    assert client.resume(rid) == "RUNNING"
    assert client.cancel(rid, "changed my mind") == "CANCELLED"
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "2")  # finds step1's request queued

    def skipped() -> bool:  # the worker took the request and found the run cancelled
        return f"skipping req:{rid}:step1:1: the run was cancelled" in procs.logs()

    env.until(rid, skipped, "the worker to take step1's request")
    info = client.status(rid)
    assert info.status == "CANCELLED"
    assert sf.describe(info) == {"step1": "SKIPPED", "step2": "SKIPPED", "step3": "SKIPPED"}
    assert sf.recorded(log) == []  # the body of a cancelled run's queued task never ran
    cancel = [e for e in client.history(rid) if e.scope == "run" and e.new == "CANCELLED"]
    assert cancel[0].extra.get("reason") == "changed my mind"


def test_cancel_before_any_engine_saw_the_run(procs: Processes, client: Client) -> None:
    rid = client.submit(sf.steps_flow, {"x": 1, "log": key("log"), "flag": key("flag")})
    assert client.cancel(rid, wait_s=None) == "PENDING"  # enqueued behind the submit
    procs.engine()
    info = procs.wait(client, rid, 60)
    assert info.status == "CANCELLED"
    assert set(sf.describe(info).values()) == {"SKIPPED"}


def test_finished_runs_expire_after_the_retention_active_runs_never(
    procs: Processes, client: Client, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)
    procs.engine(env={"ACKFLOW_RETENTION_S": "120"})
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "2")
    gate = key("gate")
    done = client.submit(sf.retry_flow, {"fail_times": 0, "log": key("log")})
    active = client.submit(sf.deadline_flow, {"gate_key": gate})
    assert procs.wait(client, done, 60).status == "SUCCESS"
    env = Env("distributed", client, procs)
    env.until(
        active, lambda: env.task_is(active, "waits_for_gate", "RUNNING"), "the active run's task to run"
    )
    r = client.store.client  # type: ignore[attr-defined]
    for part in keys_of_a_run():
        ttl = r.ttl(f"{config.prefix}:{{{done}}}:{part}")
        assert ttl == -2 or 0 < ttl <= 120, (part, ttl)  # -2: that part was never written
        assert r.ttl(f"{config.prefix}:{{{active}}}:{part}") in (-1, -2), part
    assert r.ttl(f"{config.prefix}:{{{done}}}:meta") > 0
    sf.open_gate(gate)
    assert procs.wait(client, active, 60).status == "SUCCESS"
    assert 0 < r.ttl(f"{config.prefix}:{{{active}}}:meta") <= 120


def keys_of_a_run() -> list[str]:
    from runner.store import keys

    return list(keys.RUN_PARTS)


# --- conditional edges -------------------------------------------------------------------


@pytest.mark.parametrize(
    "order,ran,skipped,summary",
    [
        (
            5,
            {"quote", "auto_approval", "summarise"},
            {"manual_approval", "notify_approver"},
            "auto-approved 50",
        ),
        (
            50,
            {"quote", "manual_approval", "notify_approver", "summarise"},
            {"auto_approval"},
            "approved 500 by hand / told: approved 500 by hand",
        ),
    ],
)
def test_conditional_edges_skip_what_is_only_reachable_through_them(
    env: Env, order: int, ran: set[str], skipped: set[str], summary: str
) -> None:
    rid = env.client.submit(sf.approval_flow, {"order": order})
    info = env.wait(rid)
    assert info.status == "SUCCESS", info
    assert info.result == {"summary": summary}
    assert {n for n, s in sf.describe(info).items() if s == "SUCCESS"} == ran
    assert {n for n, s in sf.describe(info).items() if s == "SKIPPED"} == skipped
    notes = {e.scope: e.extra.get("note", "") for e in env.history(rid) if e.new == "SKIPPED"}
    first = "manual_approval" if order == 5 else "auto_approval"
    assert notes[first].startswith("condition false: amount ")
    if order == 5:
        assert notes["notify_approver"] == "no incoming edge taken"


# --- map (with-items) --------------------------------------------------------------------


def test_a_thousand_item_map_gathers_results_in_input_order(env: Env) -> None:
    rid = env.client.submit(sf.map_flow, {"count": 1000, "fail_on": 7})
    info = env.wait(rid, 300)
    assert info.status == "SUCCESS", info.error
    assert info.result == {
        "squares": [n * n for n in range(1000)],
        "total_sq": sum(n * n for n in range(1000)),
    }
    assert set(info.tasks) == {"make_ids", "square", "add_up"}  # elements are not listed one by one
    h = env.history(rid)
    started = [e for e in h if e.old != e.new and e.new == "SCHEDULED" and e.scope.startswith("square[")]
    assert len(started) == 1000 + 2  # item 7 failed twice and was retried
    # Never more than the limit running at once: scheduled minus finished stays <= 50.
    running = peak = 0
    for e in h:
        if e.scope.startswith("square["):
            running += (e.old != e.new) * ((e.new == "SCHEDULED") - (e.new in ("SUCCESS", "FAILED")))
            peak = max(peak, running)
    assert peak <= 50
    assert max(transitions_count(h).values()) == 1


def test_a_failing_item_fails_the_map_and_the_run(env: Env) -> None:
    rid = env.client.submit(sf.map_flow, {"count": 20, "fail_on": 1012})  # item 12 raises ValueError
    info = env.wait(rid, 60)
    assert info.status == "FAILED"
    assert info.error is not None and info.error["task"] == "square" and info.error["item"] == 12
    assert info.error["message"] == "item 12: item 12 is bad"
    assert info.tasks["square"].status == "FAILED"


def test_map_over_an_empty_list(env: Env) -> None:
    info = env.wait(env.client.submit(sf.map_flow, {"count": 0}))
    assert info.status == "SUCCESS" and info.result == {"squares": [], "total_sq": 0}


def transitions_count(h: list[HistoryEntry]) -> dict[tuple[str, str, str, int], int]:
    from collections import Counter

    return Counter((e.scope, e.old, e.new, e.attempt) for e in h if e.old != e.new)


# --- the CLI's control commands and progress -----------------------------------------------


def test_control_commands_and_progress_through_the_cli(
    procs: Processes, client: Client, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from tests.helpers.processes import ACKFLOW, ROOT, cli_env

    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)
    procs.engine(env=FAST_LEASES)
    procs.start("worker", "tests.helpers.semantic_flows", "-c", "2", env=FAST_LEASES)
    gate, log = key("gate"), key("log")
    waiting = subprocess.Popen(
        [
            *ACKFLOW,
            "submit",
            "tests.helpers.semantic_flows:long_flow",
            "-i",
            f"gate_key={gate}",
            "-i",
            f"log={log}",
        ]
        + ["--run-id", "cli-long", "--wait", "--timeout", "60"],
        cwd=ROOT,
        env=cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        env = Env("distributed", client, procs)
        env.until(
            "cli-long",
            lambda: getattr(env.task("cli-long", "long_once"), "progress", None) is not None,
            "progress",
        )
        paused = procs.run("pause", "cli-long", "--reason", "night")
        assert paused.returncode == 0 and "run cli-long: PAUSED" in paused.stdout, (
            paused.stdout + paused.stderr
        )
        again = procs.run("pause", "cli-long")
        assert again.returncode == 2 and "cannot pause run cli-long: it is PAUSED" in again.stderr
        assert procs.run("resume", "cli-long").stdout.strip() == "run cli-long: RUNNING"
        sf.open_gate(gate)
        out, _ = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, out
    assert "task long_once: 50% halfway" in out  # progress printed while waiting
    assert "run cli-long: SUCCESS" in out
    missing = procs.run("cancel", "no-such-run")
    assert missing.returncode == 5 and "no-such-run" in missing.stderr
    done = procs.run("retry", "cli-long")
    assert done.returncode == 2 and "only FAILED runs" in done.stderr


# --- retry controllers on a flow (issue 16, item 1) ----------------------------------------


def test_a_retry_scope_reverts_and_tries_its_next_value_and_hands_exhaustion_to_the_outer_one(
    env: Env,
) -> None:
    log = key("log")
    bad = ["h1:1", "h2:1", "h1:2"]  # round 1 fails on both hosts; round 2 succeeds on h2
    rid = env.client.submit(sf.scoped_flow, {"item": "A", "log": log, "bad": bad})
    info = env.wait(rid)
    assert info.status == "SUCCESS", info
    assert info.result == {"configured": "ok-h2"}
    assert sf.recorded(log) == [
        "reserve",
        "book:h1",
        "configure:h1:1",
        "unbook:b-h1",  # between values: the scope's completed task, reverted; reserve kept
        "book:h2",
        "configure:h2:1",
        "unbook:b-h2",  # inner exhausted: the outer scope reverts (inner's task) and runs again
        "book:h1",
        "configure:h1:2",
        "unbook:b-h1",
        "book:h2",
        "configure:h2:2",
    ]
    h = env.history(rid)
    assert [e.extra["value"] for e in h if e.scope == "try_hosts" and e.new == "RUNNING"] == [
        "h1",
        "h2",
        "h1",
        "h2",
    ]
    assert [e.extra["value"] for e in h if e.scope == "rounds" and e.new == "RUNNING"] == [1, 2]
    assert info.tasks["configure_host"].attempt == 4  # attempt numbers grow across scope attempts
