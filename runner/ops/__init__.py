"""The operator surfaces: what people and scripts use to run and watch ackflow.

- `cli`: the ``ackflow`` command (click): runs, services (engine, serve, bench), dead letters.
- `http`: ``ackflow serve`` — the dashboard and the lazy-task completion API (Starlette on
  uvicorn), its request guard, operator login and client pool.
- `dashboard`: the HTML pages, the DAG picture, bounded rendering of stored values.
- `fleet`: workers and queues as operators see them (``ackflow workers|queues``, the pages,
  the queue metrics, the hint for a run waiting on a queue nobody consumes).
- `bench`: ``ackflow bench``, the throughput and latency benchmarks.

May import anything below it: the client room, the define room, `runner.connect` (the one
place adapters are built) and the shared leaves; of the broker only its contracts (dead
letters and queues through the `DeadLetters` and `QueueInfo` protocols, never an `isinstance` test of an adapter).
Nothing below imports `runner.ops` (tests/unit/test_layers.py enforces both).
"""
