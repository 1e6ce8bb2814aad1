"""The ``ackflow`` command line: a thin layer over the library (click).

- `main`: the group, its shared options, and plugin commands (``ackflow.commands`` entry point).
- `common`: the output boundary (every line scrubbed), exit codes, errors, inputs, clients.
- `runs`: run, submit, status, list, history, cancel, pause, resume, retry.
- `completions`: complete and fail a waiting (lazy) task by its token.
- `services`: engine, serve (alias dashboard), topology, bench.
- `dlq`: the dead-letter queue.
- `fleet`: workers, queues.

Nothing connects to a service before a subcommand runs, so ``--help`` always works: the
commands import what they run (the engine, local mode, the HTTP app) inside themselves.

May import what any operator surface may (see `runner.ops`): the client room, `runner.connect`
for the store and broker a service command runs with, the engine and local mode (to run them),
the define room (to load flows) and the shared leaves; never a concrete adapter
(tests/unit/test_layers.py enforces it).

Exit codes: 0 success (a waited-for run succeeded); 1 the run failed, was cancelled or
reverted; 2 bad usage or an invalid flow/input; 3 a service (RabbitMQ, Redis) is
unavailable (or, with ``ACKFLOW_REQUIRE_DURABLE_STORE``, not durable); 4 ``--wait``/``--timeout``
ran out; 5 no such run; 6 the lazy task was already completed (``complete``/``fail``: nothing
changed); 7 the run was lost (its state vanished from Redis while it was active).
"""

from runner.ops.cli.main import cli, load_plugins, main

__all__ = ["cli", "load_plugins", "main"]
