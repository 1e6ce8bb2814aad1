"""Reading a dead letter's headers, shared by the adapters that implement `DeadLetters`.

A message reaches the dead queue in one of two ways, and both are shown with a reason, the
logical queue it came from and its delivery count: an engine or worker rejected it
(`Broker.dead_letter` writes our ``x-ackflow-*`` headers), or RabbitMQ's delivery limit moved
it there (RabbitMQ writes ``x-death``). Whoever can publish to the dead queue's routing key
writes these headers as they like, so reading them never raises: what is not of the expected
shape reads as unknown ("?", 0).
"""

from __future__ import annotations

from typing import Any

from runner.broker.base import H_COUNT, H_QUEUE, H_REASON, DeadLetter, Outgoing, header_count


def from_headers(
    message_id: str | None, body: bytes, headers: dict[str, Any], prefix: str = ""
) -> DeadLetter:
    """The dead letter a dead-queue message stands for; ``prefix`` is stripped from the
    physical queue names RabbitMQ records (``<prefix>.engine`` -> ``engine``)."""
    h = headers
    if H_REASON in h:
        reason, queue, count = str(h[H_REASON]), str(h.get(H_QUEUE, "?")), header_count(h.get(H_COUNT))
    else:  # dead-lettered by RabbitMQ itself (delivery limit): read x-death
        deaths = h.get("x-death")
        first = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        reason = f"broker: {first.get('reason', 'unknown')}"
        physical = str(h.get("x-first-death-queue") or first.get("queue", "?"))
        queue = physical[len(prefix) :] if prefix and physical.startswith(prefix) else physical
        count = header_count(h.get("x-delivery-count")) or header_count(first.get("count"))
    return DeadLetter(message_id or "?", reason, queue, count, body, dict(h))


def replay_message(dl: DeadLetter) -> Outgoing:
    """The message that puts a dead letter back on its queue: same id (so a consumer that
    already handled it recognises the duplicate), without the broker's ``x-`` headers."""
    headers = {k: v for k, v in dl.headers.items() if not k.startswith("x-")}
    return Outgoing(dl.queue, dl.id, dl.body, headers)
