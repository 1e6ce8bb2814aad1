"""The store room: the run-state contract the engine, the workers and the client see, and its
adapters.

- `base`: the `Store` protocol and what crosses it (`Commit`, `Guard`, `DueTimer`, `Beat`, ...):
  one atomic primitive, a guarded commit, plus the reads and the timer, lease and watch calls.
- `keys`: every key template and index name of the stored state, in one module.
- `redis`: the Redis store (Lua for the atomic parts), with its parts: `redis_errors` (which
  redis-py errors are an outage), `redis_listings` (lists, pages and counts of runs),
  `redis_replicas` (the WAIT policy), `redis_watch` (pub/sub wake-ups), `redis_schedules`
  (schedules' records and their timers) and `redis_cluster` (the store on a Redis Cluster); the only modules in ackflow that import redis-py. The name
  shadows nothing: imports are absolute, so ``import redis`` inside them is redis-py.
- `lua`: the Redis store's scripts as ``.lua`` files (commit, claim, beat), loaded at import,
  with the key names they build rendered from `keys`.
- `memory`: the in-memory store of local mode (one lock); both stores pass
  tests/contract/test_store_contract.py.

May import: the standard library, `runner.errors`, `runner.config`, `runner.protocol` (and
redis-py in `redis` only). Never the engine, the broker, the client, the CLI, the HTTP API or
the dashboard (tests/unit/test_layers.py enforces it). This package re-exports `base`, so the
old ``from runner.store import Store`` keeps working; importing it never imports redis-py.
"""

# Every public name of `base`, so names a concurrent branch adds to the old runner/store.py
# (merged into base.py by git's rename detection) keep resolving at the old import path.
from runner.store.base import *  # noqa: F403
