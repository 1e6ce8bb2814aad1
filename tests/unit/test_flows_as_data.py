"""Flows as data (issue 17, item 3): a YAML or JSON flow over registered tasks compiles to
the same spec as the same flow written in Python (so it runs and is checked the same), every
mistake names the file, line and path, and the published JSON Schema accepts the examples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.define import data
from runner.errors import FlowDefinitionError
from runner.examples.demo import checkout
from runner.local import LocalRuntime

CHECKOUT_YAML = """\
flow: checkout
modules: [runner.examples.demo]
items:
  - task: fetch_order
  - flow:
      name: prepare
      type: unordered
      items: [{task: reserve_stock}, {task: price_order}]
  - task: charge_card
  - flow:
      name: shipping
      items: [{task: print_label}, {task: book_courier}]
outputs: [total, payment, tracking]
"""

GRAPH_YAML = """\
flow: g_demo
type: graph
modules: [tests.helpers.semantic_flows]
items:
  - task: quote
  - task: manual_approval
  - task: notify_approver
edges:
  - {from: quote, to: manual_approval, when: {value: amount, op: ">", arg: 100}}
  - [manual_approval, notify_approver]
"""


def test_the_yaml_checkout_is_the_python_checkout() -> None:
    from_yaml = data.parse(CHECKOUT_YAML, "checkout.yaml").compile()
    assert from_yaml.to_data() == checkout.compile().to_data()


def test_json_too_and_the_same_run() -> None:
    as_json = json.dumps(yaml.safe_load(CHECKOUT_YAML), indent=2)
    spec = data.parse(as_json, "checkout.json").compile()
    assert spec.to_data() == checkout.compile().to_data()
    with LocalRuntime() as rt:
        a = rt.run(spec, {"order_id": 3}, timeout_s=60)
        b = rt.run(checkout, {"order_id": 3}, timeout_s=60)
        shape = [(h.scope, h.old, h.new) for h in rt.client.history(a.run_id) if h.old != h.new]
        assert shape == [(h.scope, h.old, h.new) for h in rt.client.history(b.run_id) if h.old != h.new]
    assert a.result["tracking"] == b.result["tracking"] and a.result["total"] == b.result["total"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),  # after a first line "modules: [runner.examples.demo]"
    [
        (
            "flow: x\nitems:\n  - task: fetch_order\n    retyr: 3\n",
            "x.yaml:5: items[0].retyr: unknown key 'retyr'; did you mean 'retry'?",
        ),
        ("flow: x\nitems:\n  - task: no_such_task\n", "x.yaml:4: items[0].task: unknown task 'no_such_task'"),
        ("flow: x\nitems: []\n", "x.yaml:3: items: must be a non-empty list"),
        (
            "flow: x\ntype: tree\nitems: [{task: fetch_order}]\n",
            "x.yaml:3: type: must be linear, unordered or graph",
        ),
        ("flow: x\nitems:\n  - task: fetch_order\n    retry: {attempts: 0}\n", "x.yaml:5: items[0].retry"),
        (
            "flow: x\nitems:\n  - {task: fetch_order}\nedges: [[a, b]]\n",
            "x.yaml:5: edges: only a graph flow has edges",
        ),
        ("flow: [x\n", "x.yaml:3: not valid YAML or JSON"),
        ("items: [{task: fetch_order}]\n", "x.yaml:1: the flow's name is missing"),
    ],
)
def test_every_mistake_names_the_file_line_and_path(text: str, message: str) -> None:
    with pytest.raises(FlowDefinitionError) as e:
        data.parse("modules: [runner.examples.demo]\n" + text, "x.yaml").compile()
    assert message in str(e.value)


def test_a_graph_with_a_conditional_edge() -> None:
    spec = data.parse(GRAPH_YAML, "g.yaml").compile()
    assert spec.tasks["quote"].when == {"manual_approval": {"value": "amount", "op": ">", "arg": 100}}


@pytest.mark.parametrize("doc", [CHECKOUT_YAML, GRAPH_YAML])
def test_the_published_schema_accepts_the_examples_and_refuses_typos(doc: str) -> None:
    schema = json.loads(data.SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(doc), schema)
    bad = yaml.safe_load(doc)
    bad["items"][0]["retyr"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_file_on_disk(tmp_path: Path) -> None:
    p = tmp_path / "checkout.yaml"
    p.write_text(CHECKOUT_YAML)
    assert data.load(p).name == "checkout"
    with pytest.raises(FlowDefinitionError, match="nope.yaml: No such file"):
        data.load(tmp_path / "nope.yaml")
