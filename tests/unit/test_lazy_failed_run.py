"""A waiting lazy task of a run that failed meanwhile still takes its completion (found by
make sim, seed 50818): refused, the outside system's answer was lost, and after the
operator's retry the run waited for it for ever."""

from __future__ import annotations

from runner import flow, protocol, task
from runner.protocol import Event
from tests.helpers.harness import Harness


@task(provides="lf_answer")
def lf_ask(x: int) -> int:
    return x


@task(provides="lf_other")
def lf_break(x: int) -> int:
    return x


@task(provides="lf_done")
def lf_after(lf_answer: int, lf_other: int) -> int:
    return lf_answer + lf_other


FLOW = flow.graph("lf_flow", lf_ask, lf_break, lf_after)


def test_a_completion_in_a_failed_run_is_kept_for_its_retry() -> None:
    h = Harness()
    rid = h.client.submit(FLOW, {"x": 1})
    h.pump()
    reqs = h.by_task()
    ask = reqs["lf_ask"]
    h.send(h.event(protocol.TASK_WAITING, ask, protocol.waiting_id(rid, "lf_ask", 1)))
    h.pump()
    h.fail(reqs["lf_break"])  # no retry policy: the run fails while lf_ask waits
    assert h.status(rid)[0] == "FAILED"
    done = Event(
        protocol.TASK_COMPLETE,
        f"complete:{rid}:lf_ask:1:x",
        rid,
        "lf_ask",
        1,
        {"by": "t", "values": {"lf_answer": 41}},
    )
    h.send(done)
    h.pump()
    assert h.status(rid) == ("FAILED", {"lf_ask": "SUCCESS", "lf_break": "FAILED", "lf_after": "PENDING"})
    assert h.requests() == []  # a failed run starts nothing
    h.control(rid, protocol.RUN_RETRY)
    again = h.one()
    assert (again.task, again.attempt) == ("lf_break", 2)
    h.ok(again, lf_other=1)
    after = h.one()
    assert after.args == {"lf_answer": 41, "lf_other": 1}
    h.ok(after, lf_done=42)
    assert h.client.status(rid).status == "SUCCESS"
