"""The flow DSL and its validation (no network)."""

from __future__ import annotations

import pytest

from runner import flow, task
from runner.define.flows import END, validate_inputs
from runner.define.tasks import Registry
from runner.errors import (
    CycleError,
    DuplicateTaskError,
    FlowDefinitionError,
    MissingInputError,
    UnknownTaskError,
)

reg = Registry()


@task(provides="a", registry=reg)
def make_a(x: int) -> int:
    return x


@task(provides="b", registry=reg)
def make_b(a: int) -> int:
    return a


@task(provides="c", registry=reg)
def make_c(a: int, scale: int = 2) -> int:
    return a * scale


@task(provides="d", registry=reg)
def make_d(b: int, c: int) -> int:
    return b + c


@task(provides=("q", "r"), registry=reg)
def divmod_task(x: int) -> tuple[int, int]:
    return divmod(x, 3)


@task(registry=reg)
def noop() -> None:
    return None


def test_task_requires_come_from_parameters_and_provides_binds_the_result() -> None:
    assert make_c.requires == ("a",)
    assert make_c.optional == ("scale",)
    assert make_c.provides == ("c",)
    assert divmod_task.provides == ("q", "r") and divmod_task.unpack
    assert make_a(3) == 3  # still callable as a plain function


def test_linear_flow_orders_items() -> None:
    spec = flow.linear("lin", noop, make_a.bind(provides="a"), make_b).compile(reg)
    assert spec.tasks["noop"].succs == ["make_a"]
    assert spec.tasks["make_a"].preds == ["noop"]
    assert spec.tasks["make_b"].succs == [END]
    assert spec.inputs == ["x"]
    assert spec.outputs == ["b"]


def test_graph_infers_edges_from_data_and_takes_explicit_edges() -> None:
    spec = flow.graph("g", make_d, make_c, make_b, make_a, noop, edges=[("noop", "make_a")]).compile(reg)
    assert spec.tasks["make_d"].preds == ["make_b", "make_c"]
    assert spec.tasks["make_a"].succs == ["make_b", "make_c"]
    assert spec.tasks["make_a"].preds == ["noop"]
    assert spec.sinks == ["make_d"]
    assert spec.optional_inputs == ["scale"]


def test_unordered_items_have_no_edges() -> None:
    spec = flow.linear("outer", make_a, flow.unordered("par", make_b, make_c), make_d).compile(reg)
    assert spec.tasks["make_b"].preds == ["make_a"] and spec.tasks["make_c"].preds == ["make_a"]
    assert spec.tasks["make_d"].preds == ["make_b", "make_c"]


def test_nested_flows_connect_through_their_entries_and_exits() -> None:
    inner = flow.linear("inner", make_b.bind("b1"), noop)
    spec = flow.linear("outer", make_a, inner, make_c).compile(reg)
    assert spec.tasks["b1"].preds == ["make_a"]
    assert spec.tasks["make_c"].preds == ["make_a", "noop"]  # data edge plus order edge


def test_cycle_is_named() -> None:
    @task(provides="x", registry=reg, name="cyc_x")
    def cx(y: int) -> int:
        return y

    @task(provides="y", registry=reg, name="cyc_y")
    def cy(x: int) -> int:
        return x

    with pytest.raises(CycleError) as e:
        flow.graph("cyc", cx, cy).compile(reg)
    assert "cyc_x" in str(e.value) and "cyc_y" in str(e.value)


def test_cycle_from_explicit_edge_against_data() -> None:
    with pytest.raises(CycleError):
        flow.graph("g", make_a, make_b, edges=[("make_b", "make_a")]).compile(reg)


def test_linear_order_against_data_is_a_cycle() -> None:
    with pytest.raises(CycleError) as e:
        flow.linear("backwards", make_b, make_a).compile(reg)
    assert "make_a" in str(e.value)


def test_duplicate_task_name() -> None:
    with pytest.raises(DuplicateTaskError) as e:
        flow.linear("dup", make_a, flow.linear("inner", make_a)).compile(reg)
    assert e.value.name == "make_a"


def test_same_task_twice_with_distinct_names_is_fine() -> None:
    spec = flow.unordered(
        "twice", make_b.bind("b1", provides="b1"), make_b.bind("b2", provides="b2")
    ).compile(reg)
    assert set(spec.tasks) == {"b1", "b2"}


def test_unknown_task_name() -> None:
    with pytest.raises(UnknownTaskError) as e:
        flow.linear("unk", "no_such_task").compile(reg)
    assert "no_such_task" in str(e.value)


def test_registered_task_by_name() -> None:
    spec = flow.linear("byname", "make_a").compile(reg)
    assert spec.tasks["make_a"].fn == "make_a"


def test_missing_input_names_task_and_value() -> None:
    spec = flow.linear("lin", make_a, make_b).compile(reg)
    with pytest.raises(MissingInputError) as e:
        validate_inputs(spec, {})
    assert (e.value.task, e.value.name) == ("make_a", "x")
    validate_inputs(spec, {"x": 1})


def test_unordered_siblings_cannot_depend_on_each_other() -> None:
    with pytest.raises(FlowDefinitionError, match="sibling"):
        flow.unordered("par", make_a, make_b).compile(reg)


def test_two_providers_of_one_name() -> None:
    with pytest.raises(FlowDefinitionError, match="both provide 'b'"):
        flow.unordered("par", make_b.bind("b1"), make_b.bind("b2")).compile(reg)


def test_empty_flow_and_bad_items() -> None:
    with pytest.raises(FlowDefinitionError, match="no tasks"):
        flow.linear("empty").compile(reg)
    with pytest.raises(FlowDefinitionError, match="not int"):
        flow.linear("bad", 42).compile(reg)
    with pytest.raises(FlowDefinitionError, match="not one of its items"):
        flow.graph("g", make_a, edges=[("make_a", "ghost")]).compile(reg)


def test_bad_names_are_refused() -> None:
    with pytest.raises(FlowDefinitionError):
        flow.linear("has space", make_a)
    with pytest.raises(FlowDefinitionError):
        make_a.bind("x{y}")


def test_rebind_of_unknown_parameter() -> None:
    with pytest.raises(FlowDefinitionError, match="no parameter 'nope'"):
        make_a.bind(rebind={"nope": "z"})


def test_requires_needs_kwargs() -> None:
    with pytest.raises(FlowDefinitionError, match="kwargs"):

        @task(requires=["z"], registry=reg)
        def no_kwargs(a: int) -> int:
            return a


def test_registering_two_functions_under_one_name() -> None:
    with pytest.raises(FlowDefinitionError, match="registered twice"):

        @task(name="make_a", registry=reg)
        def other(x: int) -> int:
            return x


def test_spec_round_trips_through_plain_data() -> None:
    from runner.define.flows import FlowSpec
    from runner.protocol import pack, unpack

    spec = flow.graph("g", make_d, make_c, make_b, make_a).compile(reg)
    assert FlowSpec.from_data(unpack(pack(spec.to_data()))) == spec


def test_explicit_outputs_must_exist() -> None:
    spec = flow.linear("o", make_a, make_b, outputs=["a", "b"]).compile(reg)
    assert spec.outputs == ["a", "b"]
    with pytest.raises(FlowDefinitionError, match="output 'zzz'"):
        flow.linear("o2", make_a, outputs=["zzz"]).compile(reg)


# --- failure handling and joins in the spec ----------------------------------------------


@task(provides="paid", registry=reg, retry=3, timeout=2.5)
def pay(a: int) -> int:
    return a


@pay.revert
def refund_pay(a: int, result: int) -> None:
    return None


def test_retry_timeout_and_revert_are_compiled_into_the_spec() -> None:
    from runner.define.retry import Retry

    spec = flow.linear("f", make_a, pay).compile(reg)
    t = spec.tasks["pay"]
    assert Retry.from_data(t.retry or {}) == Retry(attempts=3)
    assert t.timeout_s == 2.5
    assert t.revert == "pay.revert" and "pay.revert" in reg
    assert spec.tasks["make_a"].revert == "" and spec.reverts == 1


def test_bind_overrides_retry_and_timeout() -> None:
    spec = flow.linear("f", make_a, pay.bind(retry=5, timeout=0)).compile(reg)
    assert spec.tasks["pay"].retry is not None and spec.tasks["pay"].retry["attempts"] == 5
    assert spec.tasks["pay"].timeout_s == 0


def test_join_any_and_at_least_n() -> None:
    g = flow.graph("g", make_a, make_b, make_c, make_d.bind(join="any"))
    assert g.compile(reg).tasks["make_d"].needs == 1
    g = flow.graph("g", make_a, make_b, make_c, make_d.bind(join=2))
    assert g.compile(reg).tasks["make_d"].needs == 2
    assert flow.graph("g", make_a, make_b, make_c, make_d).compile(reg).tasks["make_d"].needs == 2


@pytest.mark.parametrize("join", ["some", 0, -1, True, 1.5])
def test_bad_join_is_refused(join: object) -> None:
    with pytest.raises(FlowDefinitionError, match="join must be"):
        make_d.bind(join=join)  # type: ignore[arg-type]


def test_join_of_more_predecessors_than_there_are() -> None:
    with pytest.raises(FlowDefinitionError, match="joins 3 predecessors but has 2"):
        flow.graph("g", make_a, make_b, make_c, make_d.bind(join=3)).compile(reg)


@pytest.mark.parametrize("timeout", [-1, "5", True])
def test_bad_timeout_is_refused(timeout: object) -> None:
    with pytest.raises(FlowDefinitionError, match="timeout"):
        make_a.bind(timeout=timeout)  # type: ignore[arg-type]


def test_revert_handler_must_take_keywords() -> None:
    with pytest.raises(FlowDefinitionError, match="keyword arguments"):
        make_a.revert(lambda *args: None)


def test_conditions_are_compiled_onto_their_edges() -> None:
    g = flow.graph("g", make_a, make_b, make_c, edges=[("make_a", "make_b", flow.when("a", ">", 3))])
    spec = g.compile(reg)
    assert spec.tasks["make_a"].when == {"make_b": {"value": "a", "op": ">", "arg": 3}}
    assert spec.tasks["make_a"].succs == ["make_b", "make_c"]


def test_condition_on_a_value_not_available_yet_is_refused() -> None:
    g = flow.graph("g", make_a, make_b, make_c, make_d, edges=[("make_b", "make_d", flow.when("c"))])
    with pytest.raises(FlowDefinitionError, match="does not run before 'make_b'"):
        g.compile(reg)
    g = flow.graph("g", make_a, make_b, edges=[("make_a", "make_b", flow.when("nope"))])
    with pytest.raises(FlowDefinitionError, match="which no task provides"):
        g.compile(reg)


@pytest.mark.parametrize(
    "args,match",
    [
        (("x", "~", 1), "unknown operator"),
        (("x", "truthy", 1), "takes no argument"),
        (("x", "in", 3), "list"),
    ],
)
def test_bad_conditions_are_refused(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(FlowDefinitionError, match=match):
        flow.when(*args)  # type: ignore[arg-type]


def test_conditions_never_raise_on_odd_values() -> None:
    from runner.define.conditions import holds

    assert holds({"op": ">", "arg": 3, "value": "n"}, 4)
    assert not holds({"op": ">", "arg": 3, "value": "n"}, None)
    assert holds({"op": "in", "arg": ["a", "b"], "value": "n"}, "a")
    assert holds({"op": "falsy", "arg": None, "value": "n"}, 0)
