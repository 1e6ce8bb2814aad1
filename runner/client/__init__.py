"""The producer's and operator's side: submit runs, read them, control them, complete lazy tasks.

- `client` — `Client`: submit, wait, status, history, list, cancel/pause/resume/retry.
- `info` — the records it returns (`RunInfo`, `TaskInfo`, `HistoryEntry`).
- `completion` — completing or failing a waiting (lazy) task with its token.
- `tokens` — the signed completion tokens themselves.
- `attempts` — one task seen closely: its attempts (from the history), inputs and results,
  a map node's elements (the dashboard's task pages and timeline).

May import the shared leaves (errors, config, protocol, states, caps, logs), the flow
definitions (`runner.define`), the store and broker *contracts*, and the typed task record
(`runner.decide.records`); never the engine, an adapter, or the operator surfaces (`runner.ops`).
"""

from runner.client.client import Client
from runner.client.info import HistoryEntry, RunInfo, TaskInfo, who

__all__ = ["Client", "HistoryEntry", "RunInfo", "TaskInfo", "who"]
