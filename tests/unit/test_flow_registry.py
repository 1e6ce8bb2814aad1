"""The flow registry (issue 17, items 1-2): flows recorded by name with every version's spec,
submitted by name without their module; a new version never changes a run in flight."""

from __future__ import annotations

import pytest

from runner import flow, task
from runner.client import flows as registry
from runner.errors import MissingInputError, UnknownFlowError, UnknownInputError
from tests.helpers import flows
from tests.helpers.harness import Harness


@task(provides="fr_out")
def fr_double(x: int) -> int:
    return 2 * x


@task(provides="fr_out")
def fr_triple(x: int) -> int:
    return 3 * x


V1 = flow.linear("fr_flow", fr_double)
V2 = flow.linear("fr_flow", fr_triple)


def test_a_registered_flow_is_submitted_by_name_at_its_latest_version() -> None:
    h = Harness()
    first = registry.register(h.store, V1.compile(), by="test")
    rid = h.client.submit("fr_flow", {"x": 5})
    h.pump()
    assert h.one().fn == "fr_double"
    second = registry.register(h.store, V2.compile(), by="test")
    assert second.digest != first.digest
    rid2 = h.client.submit("fr_flow", {"x": 5})
    h.pump()
    assert h.one().fn == "fr_triple"
    assert h.client.status(rid).tasks["fr_double"].status == "SCHEDULED"  # the run in flight kept v1
    assert h.client.status(rid2).flow == "fr_flow"
    old = h.client.submit("fr_flow", {"x": 1}, version=first.digest[:8])  # an older version by digest
    h.pump()
    assert h.one().fn == "fr_double" and old


def test_the_registry_lists_each_flow_with_its_versions_inputs_and_queues() -> None:
    h = Harness()
    registry.register(h.store, V1.compile(), by="w1")
    registry.register(h.store, V2.compile(), by="w2")
    registry.register(h.store, V2.compile(), by="w2")  # the same version again
    [info] = [i for i in registry.list_flows(h.store) if i.name == "fr_flow"]
    assert (info.versions, info.by, info.inputs, info.queues) == (2, "w2", ["x"], ["default"])
    assert info.digest == registry.digest_of(V2.compile())


def test_submitting_by_name_checks_inputs_as_ever() -> None:
    h = Harness()
    registry.register(h.store, flows.chain10.compile())
    with pytest.raises(MissingInputError):
        h.client.submit("chain10", {})
    with pytest.raises(UnknownInputError, match="did you mean 'v0'"):
        h.client.submit("chain10", {"v0": 1, "vv0": 2})


def test_an_unknown_name_or_version_is_refused_with_what_is_known() -> None:
    h = Harness()
    registry.register(h.store, V1.compile())
    with pytest.raises(
        UnknownFlowError, match="no flow named 'fr_flw' is registered.*did you mean 'fr_flow'"
    ):
        h.client.submit("fr_flw", {"x": 1})
    with pytest.raises(UnknownFlowError, match="has no registered version 'zzz'"):
        h.client.submit("fr_flow", {"x": 1}, version="zzz")


def test_the_digest_is_the_engines_spec_id() -> None:
    h = Harness()
    rid = h.client.submit(V1, {"x": 1})
    h.pump()
    spec_id = h.store.read(rid, {"meta": ["spec_id"]})["meta"][0]
    assert spec_id == registry.digest_of(V1.compile()).encode()
