"""The worker: consume task requests, execute them, publish results.

- `loop`: `Worker`, the message loop (one thread owns the broker connection, a pool runs the
  tasks, an event loop the async ones): accept, dispatch, publish results with confirms, then acknowledge.
- `leases`: long tasks hold no delivery: when a task is due a lease, and the heartbeat thread
  that renews leases and carries progress and cancellation.
- `skip`: which requests not to run (a cancelled or vanished run's, a superseded attempt's, a
  failing run's not yet started), read from the run's stored state.
- `execute`: running one task request's body and turning its outcome into an event.
- `aio`: ``async def`` tasks: the event loop thread they run on, and one attempt of one.
- `cli`: the ``ackflow worker`` command (found by runner's CLI through an entry point).

May import any of runner's contracts and leaves (never a concrete store or broker outside
`cli`, never an operator surface; tests/unit/test_layers.py enforces it); runner never imports
workers. ``workers.runtime``, the old path of `loop`, still imports with a DeprecationWarning
(`runner.moved`).
"""

from workers.loop import Worker

__all__ = ["Worker"]
