"""Example flows: the demo (`make demo`), the flows the README shows and the benchmark's
(`noop`).

Written as a user would: they import the public API (``from runner import task, flow``),
`runner.local`, `runner.lazy`, `runner.logs` and the client room; nothing of the engine, the
decisions, the store, the broker or the operator surfaces (tests/unit/test_layers.py enforces
it). Only `runner.ops` (bench) imports them.
"""
