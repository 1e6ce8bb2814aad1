"""The test kit: what more than one test module needs, so no test module imports another.

- `net`: `free_port`.
- `harness`: the engine `Harness` on the in-memory store and local broker (no network).
- `processes`: `Processes` (CLI engines, workers, ``serve``) and `cli_env`.
- `checks`: the chaos and crash-point checkers, pure functions of histories and faults.
- `ci`: `require` / `can_check`: a check that cannot run here is skipped, but fails under CI.

Flows used by tests stay in tests/e2e/flows.py (workers import them by that module path).
"""
