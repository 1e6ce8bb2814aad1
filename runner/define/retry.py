"""Retry policies: how many attempts, how long between them, and for which errors.

A policy is plain data stored in the flow spec, so the engine decides retries without user
code. Backoff is exponential with a cap; jitter spreads retries of many runs failing at once
(a thundering herd on whatever failed) and is derived from the attempt's identity, so the
decision is the same however often it is recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import FlowDefinitionError

# Failures no retry can fix: the request kills its workers, the worker lacks the task, or the
# result broke the protocol. They end the attempt whatever the policy says.
NEVER_RETRIED = frozenset({"PoisonMessage", "UnknownTaskError", "ProtocolError"})


def _type_name(t: type[BaseException] | str) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, type) and issubclass(t, BaseException):
        return t.__name__
    raise FlowDefinitionError(f"retry on= takes exception types or their names, not {t!r}")


@dataclass(frozen=True)
class Retry:
    """Up to ``attempts`` tries in all; before try n+1 wait ``delay * factor**(n-1)`` seconds,
    at most ``max_delay``, jittered down to half when ``jitter``. ``on`` limits retries to
    errors of these types (a subclass matches its bases, compared by class name); empty = any.
    """

    attempts: int = 3
    delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True
    on: tuple[str, ...] = ()

    def __init__(
        self,
        attempts: int = 3,
        delay: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 60.0,
        jitter: bool = True,
        on: Iterable[type[BaseException] | str] = (),
    ) -> None:
        if isinstance(on, (str, type)):
            on = (on,)
        object.__setattr__(self, "attempts", int(attempts))
        object.__setattr__(self, "delay", float(delay))
        object.__setattr__(self, "factor", float(factor))
        object.__setattr__(self, "max_delay", float(max_delay))
        object.__setattr__(self, "jitter", bool(jitter))
        object.__setattr__(self, "on", tuple(_type_name(t) for t in on))
        if self.attempts < 1:
            raise FlowDefinitionError(f"Retry(attempts={attempts}) must allow at least 1 attempt")
        if self.delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise FlowDefinitionError("Retry needs delay >= 0, max_delay >= 0 and factor >= 1")

    def to_data(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "delay": self.delay,
            "factor": self.factor,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "on": list(self.on),
        }

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> Retry:
        return cls(d["attempts"], d["delay"], d["factor"], d["max_delay"], d["jitter"], d["on"])

    def allows(self, tries_done: int, error_types: Sequence[str]) -> bool:
        """Whether another try follows ``tries_done`` failed ones with this error."""
        if tries_done >= self.attempts:
            return False
        if any(t in NEVER_RETRIED for t in error_types):
            return False
        return not self.on or any(t in self.on for t in error_types)

    def delay_before(self, tries_done: int, key: str) -> float:
        """Seconds to wait before the try that follows ``tries_done`` failed ones."""
        base = min(self.max_delay, self.delay * self.factor ** max(0, tries_done - 1))
        if not self.jitter or base <= 0:
            return base
        frac = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") / 2**32
        return base * (0.5 + 0.5 * frac)


def policy(value: Retry | int | None) -> Retry | None:
    """Accept ``retry=3`` as shorthand for ``Retry(attempts=3)``."""
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(attempts=value)
    raise FlowDefinitionError(f"retry= takes a Retry or a number of attempts, not {value!r}")
