"""What ``@task`` refuses at decoration time, before any flow is compiled or run."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from runner import task
from runner.define.tasks import Registry
from runner.errors import DuplicateRegistrationError, FlowDefinitionError

reg = Registry()


def _line_of(fn: object) -> int:
    return fn.__code__.co_firstlineno  # type: ignore[attr-defined, no-any-return]


def test_two_definitions_under_one_name_are_refused_naming_both() -> None:
    def step(x: int) -> int:
        return x

    first = step

    def step(x: int) -> int:  # noqa: F811 - the same name again, on purpose
        return x + 1

    task(name="twice", registry=reg)(first)
    with pytest.raises(DuplicateRegistrationError) as err:
        task(name="twice", registry=reg)(step)

    msg = str(err.value)
    qualname = f"{__name__}:test_two_definitions_under_one_name_are_refused_naming_both.<locals>.step"
    assert msg.count(qualname) == 2
    assert f"({__file__}:{_line_of(first)})" in msg
    assert f"({__file__}:{_line_of(step)})" in msg
    assert "@task(name=" in msg
    assert isinstance(err.value, FlowDefinitionError)
    assert reg.get("twice").fn(1) == 1  # the first definition stays registered


def test_a_function_registered_under_another_tasks_name_is_refused() -> None:
    @task(registry=reg)
    def first_name(x: int) -> int:
        return x

    def other(x: int) -> int:
        return -x

    with pytest.raises(DuplicateRegistrationError, match=r"other \(.*test_task_registration.py:\d+\)"):
        task(name="first_name", registry=reg)(other)


def test_a_revert_handler_cannot_take_a_registered_name() -> None:
    @task(name="pay.revert", registry=reg)
    def refund_by_hand() -> None:
        return None

    @task(registry=reg, name="pay")
    def pay() -> int:
        return 1

    with pytest.raises(DuplicateRegistrationError, match="pay.revert"):

        @pay.revert
        def refund(result: int) -> None:
            return None


def test_importing_a_task_module_again_registers_the_same_tasks(tmp_path: Path) -> None:
    (tmp_path / "reimported_tasks.py").write_text(
        textwrap.dedent(
            """
            from runner import task
            from tests.unit.test_task_registration import reg

            @task(provides="y", registry=reg)
            def reimported(x: int) -> int:
                return x + 1

            @reimported.revert
            def undo(x: int, result: int) -> None:
                return None
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("reimported_tasks")
        importlib.reload(module)  # e.g. a dev server's reload
        del sys.modules["reimported_tasks"]
        again = importlib.import_module("reimported_tasks")  # a fresh import of the same file
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("reimported_tasks", None)
    assert reg.get("reimported").fn is again.reimported.fn
    assert "reimported.revert" in reg


def test_async_tasks_are_accepted_and_marked_async() -> None:
    """Issue 16 item 4: the old refusal ("async tasks are not supported yet") is gone."""

    @task(registry=reg, provides="page")
    async def fetch(url: str) -> str:
        return url

    assert reg.get("fetch").is_async and fetch.requires == ("url",)
    assert reg.has_async()


def test_async_revert_handlers_are_accepted() -> None:
    @task(registry=reg)
    def book() -> int:
        return 1

    @book.revert
    async def unbook(result: int) -> None:
        return None

    assert not reg.get("book").is_async and reg.get("book.revert").is_async


def test_an_object_with_an_async_call_is_an_async_task() -> None:
    class Fetcher:
        async def __call__(self, url: str) -> str:
            return url

    td = task(Fetcher(), name="fetcher_obj", registry=Registry())  # type: ignore[arg-type]
    assert td.is_async


def test_async_generator_tasks_are_refused_saying_what_to_do() -> None:
    with pytest.raises(FlowDefinitionError, match="async generator") as err:

        @task(registry=reg)
        async def stream(n: int):  # type: ignore[no-untyped-def]
            yield n

    assert "return it" in str(err.value) and "stream" in str(err.value)
    assert "stream" not in reg


def test_async_generator_revert_handlers_are_refused() -> None:
    @task(registry=reg)
    def lease_car() -> int:
        return 1

    with pytest.raises(FlowDefinitionError, match="async generator"):

        @lease_car.revert
        async def unlease(result: int):  # type: ignore[no-untyped-def]
            yield result
