"""Lazy tasks end to end on RabbitMQ + Redis: a run waits on an outside completion while
engines and workers are killed and restarted; outside processes complete it through each
surface (Python, CLI, HTTP against a real ``ackflow serve`` process); every refusal changes
nothing. And local mode: ``ackflow run`` prints the token and is completed from another
process through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from typing import Any

import pytest

from runner.client import Client, RunInfo
from runner.client.tokens import InvalidToken, make_token
from runner.config import Config
from runner.errors import AlreadyCompleted, CompletionRefused, RunNotFound
from tests.helpers import semantic_flows as sf
from tests.helpers.processes import ACKFLOW, ROOT, Processes, cli_env

pytestmark = pytest.mark.services

RESULT = {"approved": True, "approver": "bob"}


def key(name: str) -> str:
    return f"ackflow-test:{name}:{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _redis_for_tasks(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACKFLOW_REDIS_URL", config.redis_url)


def until(
    client: Client, procs: Processes, run_id: str, check: Any, what: str, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    watch = client.store.watch(run_id)
    try:
        while not check():
            procs.assert_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")
            watch.wait(0.5)
    finally:
        watch.close()


def waiting(client: Client, run_id: str, task: str = "await_decision") -> bool:
    try:
        t = client.status(run_id).tasks.get(task)
    except RunNotFound:
        return False
    return t is not None and t.status == "WAITING"


def token_of(log: str, attempt: int = 1) -> str:
    """The token the task itself handed to 'the outside'."""
    for entry in sf.recorded(log):
        a, _, token = entry.partition("|")
        if int(a) == attempt:
            return token
    raise AssertionError(f"no token recorded for attempt {attempt}: {sf.recorded(log)}")


def start_waiting_run(procs: Processes, client: Client, **inputs: Any) -> tuple[str, str]:
    log = key("log")
    rid = client.submit(sf.lazy_flow, {"user": "ann", "log": log, **inputs})
    until(client, procs, rid, lambda: waiting(client, rid), "the lazy task to wait")
    return rid, token_of(log)


def applied_once(client: Client, run_id: str) -> None:
    seen = Counter((h.scope, h.old, h.new, h.attempt) for h in client.history(run_id) if h.old != h.new)
    assert max(seen.values()) == 1, seen


def finished(procs: Processes, client: Client, run_id: str) -> RunInfo:
    info: RunInfo = procs.wait(client, run_id, 60)
    assert info.status == "SUCCESS", info
    assert info.result == {"outcome": "ann: granted by bob"}
    applied_once(client, run_id)
    return info


def test_python_completion_after_engines_and_workers_die_while_waiting(
    procs: Processes, client: Client
) -> None:
    e1 = procs.engine()
    w1 = procs.start("worker", "tests.helpers.semantic_flows")
    rid, token = start_waiting_run(procs, client)
    # Nothing holds the waiting task: kill everything, twice over, and bring it back.
    for victim in (e1, w1):
        procs.retire(victim)
        os.kill(victim.pid, signal.SIGKILL)
    e2 = procs.engine()
    procs.until_logged(e2, "engine started")  # the second kill hits a running engine
    procs.retire(e2)
    os.kill(e2.pid, signal.SIGKILL)
    for victim in (e1, w1, e2):
        assert victim.wait(timeout=30) == -signal.SIGKILL, procs.logs()
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    assert waiting(client, rid)
    assert client.complete(token, RESULT, wait_s=30) == "completed"
    finished(procs, client, rid)
    with pytest.raises(AlreadyCompleted, match="already completed"):
        client.complete(token, RESULT)
    assert client.status(rid).result == {"outcome": "ann: granted by bob"}


def test_cli_completion_and_refusals(procs: Processes, client: Client, config: Config) -> None:
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    rid, token = start_waiting_run(procs, client)
    history_before = len(client.history(rid))
    bad = procs.run("complete", token, "--result", '{"approved": true}')
    assert bad.returncode == 2 and "the result lacks ['approver']" in bad.stderr, bad.stderr
    forged = procs.run("complete", token[:-4] + "AAAA", "--result", json.dumps(RESULT))
    assert forged.returncode == 2 and "invalid completion token" in forged.stderr
    created = client.status(rid).created_ms
    for other in (
        make_token("not-the-secret", config.prefix, rid, created, "await_decision"),
        make_token(config.secret, "another-prefix", rid, created, "await_decision"),
        make_token(
            config.secret, config.prefix, rid, created - 1, "await_decision"
        ),  # an earlier run, same id
    ):
        refused = procs.run("complete", other, "--result", json.dumps(RESULT))
        assert refused.returncode == 2 and "invalid completion token" in refused.stderr, refused.stderr
    assert len(client.history(rid)) == history_before and waiting(client, rid)  # nothing changed
    ok = procs.run("complete", token, "--result", json.dumps(RESULT))
    assert ok.returncode == 0 and ok.stdout.strip() == "completed", ok.stdout + ok.stderr
    finished(procs, client, rid)
    again = procs.run("complete", token, "--result", json.dumps(RESULT))
    assert again.returncode == 6 and "already completed" in again.stderr


def test_operators_complete_and_fail_by_run_and_task(procs: Processes, client: Client) -> None:
    """No token in hand: the CLI mints it from ACKFLOW_SECRET for --run and --task."""
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    rid, _ = start_waiting_run(procs, client)
    usage = procs.run("complete", "--run", rid, "--result", json.dumps(RESULT))
    assert usage.returncode == 2 and "--run RUN --task TASK" in usage.stderr, usage.stderr
    missing = procs.run("complete", "--run", "no-such-run", "--task", "await_decision")
    assert missing.returncode == 5 and "no run with id 'no-such-run'" in missing.stderr, missing.stderr
    wrong = procs.run("complete", "--run", rid, "--task", "nope", "--result", "1")
    assert wrong.returncode == 2 and "has no task 'nope'" in wrong.stderr, wrong.stderr
    ok = procs.run(
        "complete", "--run", rid, "--task", "await_decision", "--result", json.dumps(RESULT), "--wait", "30"
    )
    assert ok.returncode == 0 and ok.stdout.strip() == "completed", ok.stdout + ok.stderr
    finished(procs, client, rid)
    again = procs.run("complete", "--run", rid, "--task", "await_decision", "--result", json.dumps(RESULT))
    assert again.returncode == 6 and "already completed" in again.stderr
    other, _ = start_waiting_run(procs, client)
    for attempt in (1, 2):  # the task's retry policy applies: two attempts
        until(
            client,
            procs,
            other,
            lambda a=attempt: (
                waiting(client, other) and client.status(other).tasks["await_decision"].attempt == a
            ),
            f"attempt {attempt} to wait",
        )
        failed = procs.run(
            "fail", "--run", other, "--task", "await_decision", "--error", "rejected by ops", "--wait", "30"
        )
        assert failed.returncode == 0 and failed.stdout.strip() == "failed", failed.stdout + failed.stderr
    info = procs.wait(client, other, 60)
    assert info.status == "FAILED" and "rejected by ops" in str(info.tasks["await_decision"].error)


def post(url: str, token: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_completion_through_a_serve_process(procs: Processes, client: Client) -> None:
    base = procs.serve()
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    rid, token = start_waiting_run(procs, client)
    assert post(f"{base}/v1/complete", None, {"result": RESULT})[0] == 401
    code, body = post(f"{base}/v1/complete", token.replace("af1.", "af1.x"), {"result": RESULT})
    assert code == 403 and "completion token" in body["error"]
    code, body = post(f"{base}/v1/complete", token, {"result": "nope"})
    assert code == 400 and "mapping or a list of 2" in body["error"]
    assert waiting(client, rid)
    code, body = post(f"{base}/v1/complete?wait=30", token, {"result": RESULT})
    assert (code, body["status"], body["run_id"], body["task"]) == (200, "completed", rid, "await_decision")
    finished(procs, client, rid)
    code, body = post(f"{base}/v1/complete", token, {"result": RESULT})
    assert code == 409 and body["status"] == "already completed"
    logs = procs.logs()
    assert token not in logs and token[-20:] not in logs  # tokens never logged


def test_failing_from_outside_fails_the_run(procs: Processes, client: Client) -> None:
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    rid, token = start_waiting_run(procs, client)
    # The task retries once (a new attempt defers again, with the same token), then fails.
    assert client.fail(token, "approver is on holiday", error_type="Unavailable") == "failed"
    until(
        client,
        procs,
        rid,
        lambda: waiting(client, rid) and client.status(rid).tasks["await_decision"].attempt == 2,
        "attempt 2",
    )
    out = procs.run("fail", token, "--error", "still on holiday")
    assert out.returncode == 0 and out.stdout.strip() == "failed", out.stderr
    info = procs.wait(client, rid, 60)
    assert info.status == "FAILED" and info.error is not None
    assert (info.error["type"], info.error["message"]) == ("ExternalError", "still on holiday")


def test_cancelled_run_refuses_completion(procs: Processes, client: Client) -> None:
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    rid, token = start_waiting_run(procs, client)
    assert client.cancel(rid) == "CANCELLED"
    with pytest.raises(CompletionRefused, match="is CANCELLED"):
        client.complete(token, RESULT)
    assert client.status(rid).status == "CANCELLED"


def test_token_of_a_missing_run_and_malformed_tokens(
    procs: Processes, client: Client, config: Config
) -> None:
    # A token of a run that does not exist is refused as invalid, in the words a forged one
    # gets (no run enumeration), and is still a RunNotFound for callers that tell them apart.
    with pytest.raises(RunNotFound) as missing:
        client.complete(make_token(config.secret, config.prefix, "no-such-run", 1, "await_decision"), RESULT)
    assert isinstance(missing.value, InvalidToken)
    for junk in ("", "af1.x", "af1.!!.??.sig", "af2.YQ.Yg.c2ln", "af1.YQ.Yg.\u00e9\u00e9", "af1.YQ..c2ln"):
        with pytest.raises(InvalidToken):
            client.complete(junk, RESULT)


def test_waiting_timeout_fails_the_attempt_and_the_retry_waits_again(
    procs: Processes, client: Client
) -> None:
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    log = key("log")
    rid = client.submit(sf.lazy_flow, {"user": "ann", "log": log, "wait_s": 0.5})

    def second_wait() -> bool:  # one read: WAITING and attempt 2 of the same moment
        t = client.status(rid).tasks.get("await_decision")
        return t is not None and t.status == "WAITING" and t.attempt == 2

    until(client, procs, rid, second_wait, "the retry to wait again")
    assert token_of(log, 1) == token_of(log, 2)  # one token per run and task
    # attempt 2 also times out (0.5 s after it began to wait, so the history is read only
    # once the run is over): the policy (2 attempts) is spent and the run fails
    info = procs.wait(client, rid, 60)
    assert info.status == "FAILED" and info.error is not None and info.error["type"] == "TaskTimeout"
    h = client.history(rid)
    failures = [(e.scope, e.attempt, e.extra.get("error_type")) for e in h if e.new == "FAILED"]
    assert failures == [
        ("await_decision", 1, "TaskTimeout"),
        ("await_decision", 2, "TaskTimeout"),
        ("run", 0, "TaskTimeout"),
    ]
    with pytest.raises((AlreadyCompleted, CompletionRefused)):
        client.complete(token_of(log, 2), RESULT)


def test_local_mode_prints_the_token_and_is_completed_from_another_process(config: Config) -> None:
    env = cli_env(config)
    env.pop("ACKFLOW_SECRET")  # local mode makes its own
    log = key("log")
    run = subprocess.Popen(
        [*ACKFLOW, "run", "tests.helpers.semantic_flows:lazy_flow", "-i", "user=ann", "-i", f"log={log}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        command: list[str] = []
        for line in run.stdout:  # bounded: the process exits (and the loop ends) on failure
            if line.strip().startswith("ackflow complete "):
                command = line.split()
                break
        assert command, "ackflow run printed no completion command"
        token, url = command[2], command[4]
        done = subprocess.run(
            [*ACKFLOW, "complete", token, "--url", url, "--result", json.dumps(RESULT)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and done.stdout.strip() == "completed", done.stdout + done.stderr
        rest, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(timeout=30)
        if run.stdout is not None:
            run.stdout.close()
    assert run.returncode == 0, rest
    assert 'result: {"outcome": "ann: granted by bob"}' in rest


def answered_once(client: Client, run_id: str) -> None:
    """The early completion was the attempt's result, applied once; the task's own defer()
    that followed was recorded and ignored."""
    h = client.history(run_id)
    ends = [(e.old, e.new, e.attempt) for e in h if e.scope == "answers_early" and e.old != e.new]
    assert ends[-1][1:] == ("SUCCESS", 1) and [x for x in ends if x[1] == "SUCCESS"] == [ends[-1]], ends
    assert not [x for x in ends if x[1] == "WAITING"], ends
    ignored = [e for e in h if e.scope == "answers_early" and e.kind == "task.waiting"]
    assert [e.extra.get("note") for e in ignored] == ["ignored: task is already SUCCESS"], ignored
    applied_once(client, run_id)


def test_a_task_that_completes_itself_before_deferring_succeeds(procs: Processes, client: Client) -> None:
    """The token exists while the body runs: a completion sent before the task's defer() is
    recorded is accepted (not refused with "not WAITING") and is the attempt's result."""
    procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    log = key("log")
    rid = client.submit(sf.early_flow, {"user": "ann", "log": log, "self_complete": True})
    info = procs.wait(client, rid, 60)
    assert info.status == "SUCCESS", info
    assert info.result == {"outcome": "ann: granted by self"}
    assert sf.recorded(log) == ["completed"]  # what the task's own Client.complete answered
    # the worker's waiting event is applied (and ignored) before or after the run ends
    until(client, procs, rid, lambda: any(e.kind == "task.waiting" for e in client.history(rid)), "defer()")
    answered_once(client, rid)
    token = client.token_for(rid, "answers_early")
    with pytest.raises(AlreadyCompleted, match="already completed"):
        client.complete(token, RESULT)


def test_local_mode_accepts_a_completion_sent_while_the_task_runs(config: Config) -> None:
    from runner.local import LocalRuntime

    log, gate = key("log"), key("gate")
    with LocalRuntime(config) as rt:
        rid = rt.client.submit(sf.early_flow, {"user": "ann", "log": log, "gate_key": gate})
        watch = rt.client.store.watch(rid)
        try:
            deadline = time.monotonic() + 30
            while not sf.recorded(log):  # the body runs and has handed its token out
                assert time.monotonic() < deadline, "the lazy task never ran"
                watch.wait(0.1)
        finally:
            watch.close()
        token = token_of(log)
        assert rt.client.status(rid).tasks["answers_early"].status in ("SCHEDULED", "RUNNING")
        assert rt.client.complete(token, RESULT) == "completed"  # before the task deferred
        sf.open_gate(gate)
        info = rt.client.wait(rid, 60)
        assert info.status == "SUCCESS" and info.result == {"outcome": "ann: granted by bob"}, info
        watch = rt.client.store.watch(rid)
        try:
            deadline = time.monotonic() + 30
            while not any(e.kind == "task.waiting" for e in rt.client.history(rid)):
                assert time.monotonic() < deadline, "the task's defer() was never recorded"
                watch.wait(0.1)
        finally:
            watch.close()
        answered_once(rt.client, rid)
        with pytest.raises(AlreadyCompleted, match="already completed"):
            rt.client.complete(token, RESULT)


def test_a_completion_no_engine_applies_in_time_is_accepted(procs: Processes, client: Client) -> None:
    engine = procs.engine()
    procs.start("worker", "tests.helpers.semantic_flows")
    rid, token = start_waiting_run(procs, client)
    engine.terminate()  # from now on a completion is published, but no engine applies it (yet)
    engine.wait(30)
    procs.retire(engine)
    base = procs.serve()
    out = procs.run("complete", token, "--wait", "0", "--result", json.dumps(RESULT))
    assert (out.returncode, out.stdout.strip()) == (0, "accepted"), out.stderr
    code, body = post(f"{base}/v1/complete?wait=0", token, {"result": RESULT})
    assert (code, body["status"]) == (202, "accepted")
    out = procs.run("complete", token, "--url", base, "--wait", "0", "--result", json.dumps(RESULT))
    assert (out.returncode, out.stdout.strip()) == (0, "accepted"), out.stderr
    procs.engine()  # the first completion is applied, the others are told it already was
    finished(procs, client, rid)
