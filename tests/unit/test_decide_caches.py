"""What the engine remembers between runs of one flow (its decoded spec, each task's read
plan) changes nothing a run does: runs of a flow share it, a different flow with the same
task names gets its own, and a known flow's result is still decided from one read."""

from __future__ import annotations

from typing import Any

from runner.protocol import TaskRequest
from runner.store import keys
from tests.helpers import flows
from tests.helpers.harness import Harness


def _step(h: Harness, req: TaskRequest) -> None:
    h.send(h.result(req, **{f"v{int(req.task[1:])}": req.args["x"] + 1}))


def test_runs_of_one_flow_share_its_spec_and_another_flow_with_the_same_names_does_not() -> None:
    h = Harness()
    # s2 ends chain2 but precedes s3 in chain3: a plan remembered for the wrong flow would
    # read the wrong successors, or none
    runs = {
        h.client.submit(flows.chain(2), {"v0": 0}): {"v2": 2},
        h.client.submit(flows.chain(3), {"v0": 10}): {"v3": 13},
        h.client.submit(flows.chain(2), {"v0": 20}): {"v2": 22},
    }
    h.pump()
    for _ in range(3):  # every run one step further per round, interleaved
        for req in h.requests():
            _step(h, req)
        h.pump()
    assert {rid: h.client.status(rid).result for rid in runs} == runs
    a, b, c = runs
    spec_id = {rid: h.store.read(rid, {keys.META: ["spec_id"]})[keys.META][0] for rid in runs}
    assert spec_id[a] == spec_id[c] != spec_id[b]
    assert h.store.read_all(a, keys.SPEC) == h.store.read_all(c, keys.SPEC)
    assert h.store.read_all(a, keys.SPEC)["s2"] != h.store.read_all(b, keys.SPEC)["s2"]


def test_a_result_of_a_known_flow_is_decided_from_one_read() -> None:
    h = Harness()
    first = h.client.submit(flows.chain(3), {"v0": 0})
    h.pump()
    [req] = h.requests()
    _step(h, req)
    h.pump()  # the flow's specs are now known to the engine
    h.client.submit(flows.chain(3), {"v0": 5})
    h.pump()
    reads: list[Any] = []
    real_read = h.store.read

    def counted(run_id: str, wants: Any) -> Any:
        reads.append(run_id)
        return real_read(run_id, wants)

    h.store.read = counted  # type: ignore[method-assign]
    [req] = [r for r in h.requests() if r.run_id != first]  # the second run's first step
    _step(h, req)
    h.pump()
    assert len(reads) == 1  # its state, the successor's specs, join, state and inputs at once
    [nxt] = h.requests()
    assert (nxt.task, nxt.args) == ("s2", {"x": 6})
