"""Which kombu/py-amqp failures mean the RabbitMQ connection is gone (the adapter then drops
it and reconnects on next use), shared by runner.broker.kombu and runner.broker.kombu_admin."""

from __future__ import annotations

import amqp.exceptions
import kombu.exceptions

from runner.errors import PublishError


class ConnectionLost(PublishError):
    """The connection closed while messages were being published or confirmed."""


CONN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    amqp.exceptions.ConnectionError,
    amqp.exceptions.RecoverableChannelError,
    amqp.exceptions.RecoverableConnectionError,
    kombu.exceptions.OperationalError,
)
