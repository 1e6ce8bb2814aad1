"""The test kit: what more than one test module needs, so no test module imports another.

- `net`: `free_port`.
- `harness`: the engine `Harness` on the in-memory store and local broker (no network).
- `processes`: `Processes` (CLI engines, workers, ``serve``) and `cli_env`.
- `checks`: the chaos and crash-point checkers, pure functions of histories and faults.
- `ci`: `require` / `can_check`: a check that cannot run here is skipped, but fails under CI.
- `decide`: tables of events and views for tests that call `runner.decide.decide` directly.
- `audit`: what the chaos suite and `make cluster` check once a workload finished; `raw_redis`:
  a plain redis-py client for what tests keep in Redis themselves (gates, execution records).
- `wire`: arbitrary msgpack values, the protocol's field names, bodies that killed consumers.
- `flows`, `semantic_flows`, `cli_flows`, `http_flows`: the tasks and flows tests run, in
  process or in CLI-started workers (``ackflow worker tests.helpers.flows``).

tests/unit/test_layers.py checks that test modules import each other's code only from here.
"""
