"""The define room: what users write, as plain data the engine can decide on without them.

- `tasks`: the ``@task`` decorator and the registry workers look tasks up in.
- `flows`: linear, unordered and graph flows, nestable, compiled to a plain-data `FlowSpec`.
- `compile`: the `Flow` those patterns build, and its compilation into one checked DAG.
- `spec`: the compiled `FlowSpec` / `TaskSpec` a run stores, and checking a run's inputs.
- `conditions`: edge conditions (``when("amount", ">", 100)``), evaluated on a run's data.
- `retry`: retry policies (attempts, backoff with cap and deterministic jitter, which errors).
- `context`: what a running task knows about itself (``current_task()``): identity, progress,
  cancellation.
- `failure`: `Failure`, what a revert handler taking ``failure`` gets when its task failed.
- `lazy`: lazy tasks, ``return defer()`` and let whoever finishes the work complete it.
- `loading`: import user modules and find the flows in them, with errors that say what to fix.

May import: the standard library, `runner.errors`, `runner.config`, `runner.protocol`,
`runner.states` and this room. Never the engine, the store, the broker, the client, the
decisions or the CLI (tests/unit/test_layers.py enforces it), so a user's flow module imports
no I/O.

The old paths (``runner.flows``, ``runner.tasks``, ...) still resolve to these modules, with a
`DeprecationWarning` (`runner.moved`). ``runner.lazy`` is public API and stays.
"""
