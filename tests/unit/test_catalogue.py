"""The task catalogue (issue 17, item 4: inline definitions in ``POST /v1/runs``): what a worker
records of its tasks survives the store as plain data, and a flow compiled against stand-ins
built from it — no module imported — is the flow its module compiles, digest for digest,
with the mistakes `ackflow flows apply` names, named the same way."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from runner.client import catalogue, flows
from runner.config import Config
from runner.define import catalogue as entries
from runner.define import data
from runner.define.loading import flows_in, import_module
from runner.define.tasks import REGISTRY, REVERT_SUFFIX
from runner.errors import FlowDefinitionError
from runner.protocol import pack
from runner.store.memory import MemoryStore

MODULES = ["runner.examples.demo", "tests.helpers.semantic_flows", "tests.helpers.async_flows"]

SEATS_YAML = """\
flow: seats_flow
modules: [tests.helpers.semantic_flows]
items:
  - task: reserve
  - map: {task: book, over: seats, into: seat, provides: bookings, limit: 1}
  - task: pay_seats
"""

MIXED_YAML = """\
flow: mixed
type: graph
modules: [tests.helpers.semantic_flows]
items:
  - task: flaky
    retry: {attempts: 2, delay: 0.5, "on": [ConnectionError]}
    timeout: 3
    queue: special
  - task: ship_partly
    rebind: {charged: flaky_out}
  - task: charge
    name: charge2
    rebind: {reserved: res}
    provides: [c1, c2]
edges:
  - {from: flaky, to: ship_partly, when: {value: flaky_out, op: "==", arg: ok}}
"""


@pytest.fixture(scope="module")
def store() -> MemoryStore:
    for m in MODULES:
        import_module(m)
    s = MemoryStore()
    catalogue.record(s, REGISTRY, by="test")
    return s


def test_every_entry_survives_the_store_as_plain_data_and_stands_in_for_its_task(store: MemoryStore) -> None:
    stored = catalogue.infos(store)
    names = [n for n in REGISTRY.names() if not n.endswith(REVERT_SUFFIX)]
    assert set(names) <= set(stored)
    for name in names:
        real, e = REGISTRY.get(name), stored[name]["entry"]
        assert e == entries.entry(real, REGISTRY) == json.loads(json.dumps(e))
        assert stored[name]["digest"] == catalogue.digest_of(e) and stored[name]["by"] == "test"
        stand_in = entries.task_def(e)
        assert stand_in == real, name  # every field compiling reads, but the function
        assert stand_in.param_kinds() == real.param_kinds(), name
    assert stored["ship_partly"]["entry"]["revert_failure"] is True
    assert stored["book"]["entry"]["revert"] is True and stored["book"]["entry"]["revert_failure"] is False
    assert stored["book"]["entry"]["kinds"] == {"seat": "int", "log": "str"}
    assert stored["async_fetch"]["entry"]["async"] is True


def test_every_flow_of_the_modules_compiles_from_the_catalogue_to_its_modules_spec(
    store: MemoryStore,
) -> None:
    stand_ins = catalogue.stand_ins(store)
    compared = []
    for m in MODULES:
        for f in flows_in(import_module(m)):
            try:
                real = f.compile(REGISTRY)
            except FlowDefinitionError:
                continue
            assert flows.digest_of(f.compile(stand_ins)) == flows.digest_of(real), f.name
            compared.append(real)
    # what only the registry knows (reverts, failure, hints) was compared, not just node data
    assert any(t.revert_failure for s in compared for t in s.tasks.values())
    assert any(t.revert and t.map for s in compared for t in s.tasks.values())
    assert any(s.input_kinds for s in compared) and any(s.scopes for s in compared)


@pytest.mark.parametrize("doc", [SEATS_YAML, MIXED_YAML])
def test_a_data_flow_compiled_from_the_catalogue_is_the_one_flows_apply_compiles(
    store: MemoryStore, doc: str
) -> None:
    applied = data.parse(doc, "f.yaml").compile()
    as_text = catalogue.compile_definition(store, doc)
    as_object = catalogue.compile_definition(store, yaml.safe_load(doc))
    assert flows.digest_of(as_text) == flows.digest_of(as_object) == flows.digest_of(applied)
    if applied.name == "seats_flow":
        from tests.helpers.semantic_flows import seats_flow

        assert flows.digest_of(applied) == flows.digest_of(seats_flow.compile())


def test_nothing_is_imported_where_a_definition_is_compiled(store: MemoryStore) -> None:
    doc = SEATS_YAML.replace("tests.helpers.semantic_flows", "no_such_module_for_the_catalogue")
    assert catalogue.compile_definition(store, doc).name == "seats_flow"
    assert "no_such_module_for_the_catalogue" not in sys.modules
    with pytest.raises(FlowDefinitionError, match="no_such_module_for_the_catalogue"):
        data.parse(doc, "f.yaml")  # flows apply imports it


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("task: pay_seats", "task: pay_seat"),
            "items[2].task: unknown task 'pay_seat' (did you mean 'pay_seats'?)",
        ),
        (
            ("task: pay_seats", "task: pay_seats\n    retyr: 2"),
            "items[2].retyr: unknown key 'retyr'; did you mean",
        ),
        (("limit: 1", "limit: 1, into2: x"), "items[1].map.into2: unknown key"),
        (("type: graph", "type: tree"), "type: must be linear, unordered or graph"),
    ],
)
def test_mistakes_are_named_as_flows_apply_names_them(
    store: MemoryStore, change: tuple[str, str], message: str
) -> None:
    doc = (SEATS_YAML if "pay_seats" in change[0] or "limit" in change[0] else MIXED_YAML).replace(*change)
    with pytest.raises(FlowDefinitionError) as applied:
        data.parse(doc, "definition").compile()
    with pytest.raises(FlowDefinitionError) as inline:
        catalogue.compile_definition(store, doc)
    assert message in str(inline.value) and message in str(applied.value)
    assert str(inline.value).split(" (is ")[0] == str(applied.value).split(" (is ")[0]


def test_a_task_nobody_catalogued_or_an_unreadable_entry_is_unknown() -> None:
    empty = MemoryStore()
    with pytest.raises(FlowDefinitionError, match="unknown task 'reserve'.*worker"):
        catalogue.compile_definition(empty, SEATS_YAML)
    newer = {**entries.entry(REGISTRY.get("reserve"), REGISTRY), "format": entries.FORMAT + 1}
    empty.put_task("reserve", "d", pack(newer), pack({"digest": "d", "at": 0, "by": "x", "entry": newer}))
    empty.put_task("book", "d", b"\xc1", b"\xc1")  # not msgpack
    assert set(catalogue.infos(empty)) == {"reserve"}
    with pytest.raises(FlowDefinitionError, match="unknown task 'reserve'"):
        catalogue.compile_definition(empty, SEATS_YAML)


def test_flows_register_and_apply_record_the_tasks_they_import(config: Config, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from runner.connect import open_store
    from runner.ops import cli
    from tests.helpers.processes import cli_env

    env = cli_env(config)
    out = CliRunner().invoke(cli.load_plugins(), ["flows", "register", "tests.helpers.http_flows"], env=env)
    assert out.exit_code == 0, out.output
    store = open_store(config)
    got = catalogue.infos(store)
    assert got["double"]["by"] == "ackflow flows register tests.helpers.http_flows"
    assert got["double"]["entry"] == entries.entry(REGISTRY.get("double"), REGISTRY)
    path = tmp_path / "seats.yaml"
    path.write_text(SEATS_YAML)
    out = CliRunner().invoke(cli.load_plugins(), ["flows", "apply", str(path)], env=env)
    assert out.exit_code == 0, out.output
    got = catalogue.infos(store)
    assert got["book"]["by"] == f"ackflow flows apply {path}" and got["book"]["entry"]["revert"] is True
    assert (
        flows.digest_of(catalogue.compile_definition(store, SEATS_YAML))
        == flows.info(store, "seats_flow").digest
    )
