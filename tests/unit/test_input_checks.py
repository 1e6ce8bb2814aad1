"""Inputs are checked at submit (issue 16, item 6): an unknown name is refused with the
closest known one, a value that does not fit a task parameter's simple type hint is refused
with what was expected, before anything is enqueued."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import flow, task
from runner.define.flows import validate_inputs
from runner.define.input_types import fits, kind_of
from runner.define.spec import FlowSpec
from runner.define.tasks import Registry
from runner.errors import InputTypeError, MissingInputError, UnknownInputError
from runner.local import LocalRuntime

reg = Registry()


class Order:
    pass


@task(provides="total", registry=reg)
def price(order_id: int, coupon: str | None = None, rate: float = 1.0) -> float:
    return order_id * rate


@task(provides="shipped", registry=reg)
def ship(total: float, address: dict[str, str], items: list[int], order: Order | None = None) -> bool:
    return True


@task(provides="label", registry=reg)
def label(sku: str, untyped, note: int = None) -> str:  # type: ignore[no-untyped-def, assignment]  # noqa: ANN001
    return sku


SPEC = flow.linear("checkout", price, ship).compile(reg)
GOOD = {"order_id": 7, "address": {"city": "Oslo"}, "items": [1, 2]}


def test_a_good_submit_passes_and_optional_inputs_may_be_given() -> None:
    validate_inputs(SPEC, GOOD)
    validate_inputs(SPEC, {**GOOD, "coupon": "X", "rate": 2})  # an int is a float
    validate_inputs(SPEC, {**GOOD, "coupon": None, "items": (3,)})


def test_an_unknown_input_is_refused_with_the_closest_known_name() -> None:
    with pytest.raises(UnknownInputError, match=r"unknown input 'order_idd'.*did you mean 'order_id'\?"):
        validate_inputs(SPEC, {**GOOD, "order_idd": 7})


def test_an_unknown_input_with_nothing_close_lists_the_flows_inputs() -> None:
    with pytest.raises(UnknownInputError) as e:
        validate_inputs(SPEC, {**GOOD, "zzzzzz": 1})
    assert "address, coupon, items, order, order_id, rate" in str(e.value)


def test_a_typo_is_reported_as_the_typo_not_as_the_missing_name() -> None:
    with pytest.raises(UnknownInputError, match="did you mean 'order_id'"):
        validate_inputs(SPEC, {"address": {}, "items": [], "ordr_id": 7})
    with pytest.raises(MissingInputError):
        validate_inputs(SPEC, {"address": {}, "items": []})


@pytest.mark.parametrize(
    ("name", "value", "want"),
    [
        ("order_id", "7", "must be int \\(task 'price', parameter 'order_id'\\), not str: '7'"),
        ("order_id", True, "must be int"),  # a bool is not an int here
        ("order_id", 7.5, "must be int"),
        ("coupon", 3, "must be str or None"),
        ("rate", "fast", "must be float"),
        ("address", ["Oslo"], "must be dict"),
        ("items", {"a": 1}, "must be list"),
    ],
)
def test_a_value_that_does_not_fit_the_hint_is_refused(name: str, value: Any, want: str) -> None:
    with pytest.raises(InputTypeError, match=want):
        validate_inputs(SPEC, {**GOOD, name: value})


def test_hints_that_are_not_simple_types_are_not_checked() -> None:
    validate_inputs(SPEC, {**GOOD, "order": "anything"})
    spec = flow.linear("lbl", label).compile(reg)
    validate_inputs(spec, {"sku": "a", "untyped": object(), "note": None})  # default None: optional
    with pytest.raises(InputTypeError, match="must be int or None"):
        validate_inputs(spec, {"sku": "a", "untyped": 1, "note": "n"})


def test_a_map_checks_each_element_against_its_parameter() -> None:
    spec = flow.linear("m", flow.map(price, "ids", into="order_id", provides="totals")).compile(reg)
    validate_inputs(spec, {"ids": [1, 2, 3]})
    with pytest.raises(InputTypeError, match=r"input 'ids\[1\]' must be int"):
        validate_inputs(spec, {"ids": [1, "2"]})
    with pytest.raises(InputTypeError, match="must be list"):
        validate_inputs(spec, {"ids": 5})


def test_the_kinds_travel_with_the_spec_and_an_old_spec_checks_names_only() -> None:
    again = FlowSpec.from_data(SPEC.to_data())
    assert again.input_kinds == SPEC.input_kinds
    with pytest.raises(InputTypeError):
        validate_inputs(again, {**GOOD, "order_id": "x"})
    data = SPEC.to_data()
    del data["input_kinds"]  # a spec stored by an earlier version
    validate_inputs(FlowSpec.from_data(data), {**GOOD, "order_id": "x"})
    data["input_kinds"] = {"order_id": [["price", "order_id", "no-such-kind"], "junk"]}
    assert FlowSpec.from_data(data).input_kinds == {"order_id": []}


def test_a_bad_input_never_reaches_an_engine() -> None:
    with LocalRuntime(registry=reg) as rt:
        with pytest.raises(InputTypeError):
            rt.client.submit(SPEC, {**GOOD, "order_id": "7"}, run_id="bad-input")
        with pytest.raises(Exception):  # noqa: B017, PT011 - nothing was stored under the id
            rt.client.status("bad-input")


@pytest.mark.parametrize(
    ("hint", "kind"),
    [
        (int, "int"),
        (bool, "bool"),
        (list[int], "list"),
        (dict[str, Any], "dict"),
        (Optional[int], "int?"),  # noqa: UP045 - the old spelling is what is tested
        (int | None, "int?"),
        (int | str, None),
        (Order, None),
        (Any, None),
        (Optional[int | None], "int?"),  # noqa: UP045
    ],
)
def test_kinds_of_hints(hint: Any, kind: str | None) -> None:
    assert kind_of(hint) == kind


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.lists(st.integers())))
def test_fits_agrees_with_isinstance(value: Any) -> None:
    assert fits("int", value) == (type(value) is int)
    assert fits("float", value) == (type(value) in (int, float))
    assert fits("str?", value) == (value is None or isinstance(value, str))
    assert fits("list", value) == isinstance(value, list)
