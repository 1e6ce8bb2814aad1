"""TaskFlow's side of the local comparison: the same ten-step chain of no-op tasks as a
``linear_flow``, run one at a time by TaskFlow's serial engine in this process (the way
``taskflow.engines.run`` runs a flow). Importing this module needs TaskFlow (the ``bench``
extra); its deprecation warnings (oslo's) are silenced here, not the bench's."""

from __future__ import annotations

import time
import warnings
from typing import Any

from runner.ops.bench.cpu import Meter


def _imports() -> tuple[Any, Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from taskflow import engines, task
        from taskflow.patterns import linear_flow
    return engines, task, linear_flow


def chain(steps: int) -> Any:
    _, task, linear_flow = _imports()

    def execute(self: Any, x: int) -> int:
        return x

    noop = type("Noop", (task.Task,), {"execute": execute})  # TaskFlow has no type hints
    f = linear_flow.Flow(f"bench_chain{steps}")
    for i in range(1, steps + 1):
        f.add(noop(f"s{i}", rebind={"x": f"v{i - 1}"}, provides=f"v{i}"))
    return f


def serial(runs: int, steps: int = 10) -> dict[str, Any]:
    """``runs`` chains of ``steps``, one at a time, on the serial engine: steps/s and CPU."""
    engines, _, _ = _imports()
    flow = chain(steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engines.run(flow, engine="serial", store={"v0": 0})  # warm: imports, first compile
        meter = Meter({}, own="in-process", services=False)
        meter.start()
        start = time.perf_counter()
        for i in range(runs):
            out = engines.run(flow, engine="serial", store={"v0": i})
            assert out[f"v{steps}"] == i, out
        elapsed = time.perf_counter() - start
    return {"steps_per_s": runs * steps / elapsed, "cpu_per_1000": meter.per_1000(runs * steps)}
