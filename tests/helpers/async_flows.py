"""``async def`` tasks and flows for the end-to-end tests of async tasks (issue 16, item 4).

Workers import this module (``ackflow worker tests.helpers.async_flows``). A task that must
run until cancelled awaits a future nobody resolves: only its cancellation (a timeout, a
cancelled run) ends it, and it records that in Redis, where the test reads it.
"""

from __future__ import annotations

import asyncio

from runner import current_task, flow, task
from runner.define.retry import Retry
from tests.helpers.semantic_flows import record


async def _forever(log: str, what: str) -> None:
    """Wait until cancelled; record ``what`` when it is."""
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        record(log, what)
        raise


@task(provides="page")
async def async_fetch(x: int) -> dict[str, object]:
    ctx = current_task()

    async def part(i: int) -> int:  # concurrent children see the task's context too
        await asyncio.sleep(0)
        return i * current_task().attempt

    parts = await asyncio.gather(*(part(i) for i in range(3)))
    return {"x": x, "parts": parts, "key": ctx.idempotency_key}


@task(provides="total")
def sync_total(page: dict[str, object]) -> int:
    parts = page["parts"]
    assert isinstance(parts, list)
    return sum(parts) + int(str(page["x"]))


fetch_flow = flow.linear("async_fetch_flow", async_fetch, sync_total)


@task(provides="fresh", timeout=0.5, retry=Retry(attempts=2, on=["TaskTimeout"]))
async def async_slow(log: str) -> str:
    """Attempt 1 runs past its timeout (and is cancelled); attempt 2 returns at once."""
    attempt = current_task().attempt
    if attempt == 1:
        await _forever(log, "cancelled:1")
    return f"fresh-{attempt}"


timeout_flow = flow.linear("async_timeout_flow", async_slow)


@task(provides="stopped")
async def async_until_cancelled(log: str) -> str:
    current_task().progress(0.25, "waiting")
    await _forever(log, "cancelled")
    return "never"


cancel_flow = flow.linear("async_cancel_flow", async_until_cancelled)


@task(provides="hold")
async def async_hold(item: str, log: str) -> str:
    record(log, f"hold:{item}")
    return f"H-{item}"


@async_hold.revert
async def async_release(result: str, log: str) -> None:
    await asyncio.sleep(0)
    record(log, f"release:{result}:{current_task().task}")


@task
async def async_refuse(hold: str) -> None:
    raise PermissionError(f"cannot keep {hold}")


revert_flow = flow.linear("async_revert_flow", async_hold, async_refuse)
