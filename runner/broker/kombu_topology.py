"""What ackflow declares on RabbitMQ: one direct exchange named after the prefix, and a durable
queue per logical queue (``engine``, ``dead``, ``dead.watch``, ``task.<name>``) with the
x-arguments `queue_arguments` gives it. Part of the RabbitMQ adapter (it imports kombu).
"""

from __future__ import annotations

import logging
from typing import Any

import amqp
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from runner.broker.base import DEAD_QUEUE, DEAD_WATCH_QUEUE
from runner.config import Config

log = logging.getLogger("ackflow.broker")


# Quorum queues: where a new queue's leader goes. "balanced" spreads the leaders over a
# cluster's nodes (RabbitMQ 3.10+; the default, client-local, puts them all on the node the
# declaring process is connected to). Queues declared without it keep that: a queue's
# arguments never change, so KombuBroker takes them as they are and a policy sets it.
LEADER_LOCATOR = "x-queue-leader-locator"


def routing_key(logical: str) -> str:
    """What a queue is bound with: its own name, but the dead queue's for its watch copy."""
    return DEAD_QUEUE if logical == DEAD_WATCH_QUEUE else logical


def queue_arguments(config: Config, logical: str) -> dict[str, Any]:
    """The x-arguments of a queue; the dead queues have no dead-letter route of their own."""
    args: dict[str, Any] = {}
    if config.queue_type == "quorum":
        args["x-queue-type"] = "quorum"
        args[LEADER_LOCATOR] = "balanced"
    if logical not in (DEAD_QUEUE, DEAD_WATCH_QUEUE):
        args["x-dead-letter-exchange"] = config.prefix
        args["x-dead-letter-routing-key"] = DEAD_QUEUE
        if config.queue_type == "quorum":
            # A backstop only: engines and workers dead-letter a poison message themselves
            # after `delivery_limit` deliveries, with the reason and (for tasks) a failed run.
            args["x-delivery-limit"] = max(4 * config.delivery_limit, 20)
    return args


def physical(config: Config, logical: str) -> str:
    """A logical queue's name on the broker: ``<prefix>.<logical>``."""
    return f"{config.prefix}.{logical}"


def declare(conn: Any, config: Config, logical: set[str]) -> None:
    """Declare the exchange and these queues, on a channel of their own: a refusal closes the
    channel it came on, and must never take the consumers with it."""
    chan = conn.channel()
    try:
        exchange = Exchange(config.prefix, "direct", durable=True)
        exchange(chan).declare()
        for q in sorted(logical):
            chan = _declare_queue(conn, chan, exchange, config, q)
    finally:
        if chan.is_open:
            chan.close()


def _declare_queue(conn: Any, chan: Any, exchange: Any, config: Config, logical: str) -> Any:
    """Declare one queue; return the channel to go on with."""
    args = queue_arguments(config, logical)
    try:
        _queue(exchange, config, logical, args)(chan).declare()
        return chan
    except amqp.exceptions.PreconditionFailed as e:
        if LEADER_LOCATOR not in args or LEADER_LOCATOR not in str(e):
            raise
    # The queue predates the leader locator (an older ackflow declared it) and a queue's
    # arguments never change: take it as it is, checking the rest of its arguments. A
    # policy gives it the locator (README: Running on clusters).
    del args[LEADER_LOCATOR]
    chan = conn.channel()  # the broker closed the other one
    _queue(exchange, config, logical, args)(chan).declare()
    log.info(
        "queue %s has no %s argument (declared by an older ackflow); "
        "a policy can balance its leaders (README: Running on clusters)",
        physical(config, logical),
        LEADER_LOCATOR,
    )
    return chan


def _queue(exchange: Any, config: Config, logical: str, args: dict[str, Any]) -> Queue:
    return Queue(
        physical(config, logical),
        exchange,
        routing_key=routing_key(logical),
        durable=True,
        queue_arguments=args,
    )
