"""Schedules: flows started by time — a cron expression in a time zone, an interval, or once
at a time — by the engines, exactly once per scheduled time.

- `timing`: the maths (next firing, the last one due, the catch-up plan), pure.
- `model`: a schedule's record (definition and state), packed for the store.
- `firing`: how an engine fires a due schedule (its timer claimed) exactly once.

The client's side (add, list, pause, resume, delete, with validation against the flow registry)
is `runner.client.schedules`. May import: the store and broker contracts, `define`, `protocol`,
`states`, `submission`; never the client or the operator surfaces (the engine imports it).
"""
