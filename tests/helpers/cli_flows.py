"""Flows whose results and errors hold secrets, for the CLI output tests (a worker imports this
module as tests.helpers.cli_flows; local mode runs it in-process)."""

from __future__ import annotations

from typing import Any

from runner import current_task, flow, task

URL = "redis://:S3cr3tPW@db:6379/0"


@task(provides="leaked")
def leak(x: int) -> dict[str, str]:
    return {"tok": current_task().completion_token, "url": URL}


@task(provides="never")
def leak_in_error(x: int) -> int:
    raise ValueError(f"cannot use {current_task().completion_token} on {URL}")


@task(provides="echoed")
def echo_value(x: Any) -> Any:
    return x


leak_flow = flow.linear("leak_flow", leak)
leak_error_flow = flow.linear("leak_error_flow", leak_in_error)
echo_flow = flow.linear("echo_flow", echo_value)
