"""The broker room: the contract the engine, the workers and the client see, and its adapters.

- `base`: the `Broker` protocol, `Outgoing` / `Delivery`, the logical queue names and the
  dead-letter headers; the `DeadLetters` and `QueueInfo` protocols and the `DeadLetter` record
  for operator surfaces.
- `dead_letters`: reading a dead letter's headers (ours or RabbitMQ's), shared by the adapters
  and the engine (`from_headers`, re-exported here).
- `kombu`: RabbitMQ through kombu. Split off it: `kombu_publish` (the publishing channel and
  its confirms, re-sent on a new channel after a nack), `kombu_topology` (the exchange and the
  queues with their arguments), `kombu_admin` (queue inspection and `DeadLetters`, a base of
  `KombuBroker`) and `kombu_errors` (which failures mean the connection is gone); these are
  the only modules importing kombu.
- `local`: the in-process broker of local mode.

May import: the standard library, `runner.errors`, `runner.config`, `runner.protocol` (and
kombu in `kombu*` only). Never the engine, the client, the store, the CLI, the HTTP API or the
dashboard (tests/unit/test_layers.py enforces it). This package re-exports `base`, so the old
``from runner.broker import Broker`` keeps working; importing it never imports kombu.
"""

from runner.broker.base import (
    DEAD_QUEUE,
    DEAD_WATCH_QUEUE,
    ENGINE_QUEUE,
    H_COUNT,
    H_QUEUE,
    H_REASON,
    Broker,
    DeadLetter,
    DeadLetterNotFound,
    DeadLetters,
    Delivery,
    Outgoing,
    QueueInfo,
    QueueStats,
    task_queue,
)
from runner.broker.dead_letters import from_headers

__all__ = [
    "DEAD_QUEUE",
    "DEAD_WATCH_QUEUE",
    "ENGINE_QUEUE",
    "H_COUNT",
    "H_QUEUE",
    "H_REASON",
    "Broker",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadLetters",
    "Delivery",
    "Outgoing",
    "QueueInfo",
    "QueueStats",
    "from_headers",
    "task_queue",
]
