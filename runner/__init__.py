"""ackflow: durable flows (DAGs of tasks) on RabbitMQ + Redis, or embedded in one process.

from runner import task, flow, Client

@task(provides="total")
def add(a, b):
    return a + b

adder = flow.linear("adder", add)
client = Client.from_env()
run_id = client.submit(adder, {"a": 1, "b": 2})
print(client.wait(run_id).result)   # {'total': 3}

This module is the public API (the names in ``__all__``; ``runner.local`` and ``runner.lazy``
too). The rest is grouped in rooms, one side of the system each, whose ``__init__`` says what
lives there and what it may import: `define` (what users write), `decide` (the pure decision
core), `engine`, `store` and `broker` (contracts and adapters), `client`, `ops` (CLI, HTTP,
dashboard, bench), `examples`; beside them the shared leaves (errors, config, protocol, states,
logs, metrics, faults, caps) and `connect`, the one place that builds a store or a broker.
"""

from runner.client import Client, HistoryEntry, RunInfo, TaskInfo
from runner.config import Config
from runner.define import flows as flow
from runner.define.child import ChildRun, start_child
from runner.define.context import TaskContext, current_task
from runner.define.failure import Failure
from runner.define.flows import Flow, FlowSpec
from runner.define.retry import Retry
from runner.define.scopes import ForEach, ParameterizedForEach, Times
from runner.define.tasks import TaskDef, task
from runner.errors import AckflowError
from runner.moved import install as _install_moved_paths

_install_moved_paths()  # the pre-1.0 module paths, deprecated (runner/moved.py)

__all__ = [
    "AckflowError",
    "ChildRun",
    "Client",
    "Config",
    "Failure",
    "Flow",
    "FlowSpec",
    "ForEach",
    "HistoryEntry",
    "ParameterizedForEach",
    "Retry",
    "RunInfo",
    "TaskContext",
    "TaskDef",
    "TaskInfo",
    "Times",
    "current_task",
    "flow",
    "start_child",
    "task",
]
