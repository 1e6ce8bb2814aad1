"""The engine room: consume events, commit each one's decision, publish what it caused, ack.

- `loop`: `Engine`, the recipe of DESIGN §5: poll, decode, commit with retries, send the
  outbox, settle (confirms, mark sent, ack), poison events, timers.
- `reader`: `RunReader`, what each decision reads (the first read, then one per `Need`)
  and the cache of immutable task specs, the only state an engine keeps.

May import: the decision core (`runner.decide`), the store's and broker's contracts
(`runner.store`, `runner.broker` bases; adapters arrive built), and the shared leaves
(protocol, states, errors, config, logs, metrics, faults, durability). Never the client or an
operator surface (CLI, HTTP API, dashboard, bench) (tests/unit/test_layers.py enforces it).
The old module ``runner.engine`` is this package, so ``from runner.engine import Engine``
keeps working.
"""

from runner.engine.loop import Engine
from runner.engine.reader import RunReader

__all__ = ["Engine", "RunReader"]
