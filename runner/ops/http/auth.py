"""Operators of the dashboard: their sessions, and how fast anyone may guess the token.

A session id is random (256 bits), kept in this process only (sessions end when it restarts and
are not shared between several ``ackflow serve``) and expires after `SESSION_S`. Logins are rate
limited so the operator token cannot be guessed at network speed: each client gets a few free
failures, then waits twice as long after each further one; and when failures from everywhere
pile up, every login waits (a guesser with many addresses is slowed down too).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque

from runner.errors import ConfigError

SESSION_S = 8 * 3600
MIN_TOKEN_CHARS = 16


def check_operator_token(token: str) -> None:
    """Refuse a guessable operator token (an empty one means: the dashboard is read-only)."""
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"ACKFLOW_OPERATOR_TOKEN must be at least {MIN_TOKEN_CHARS} characters "
            f"(it has {len(token)}): use e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


class Sessions:
    """Operators' sessions: random ids, kept in this process, expiring; logout ends one."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def open(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[sid] = now + SESSION_S
        return sid

    def valid(self, sid: str) -> bool:
        with self._lock:
            return bool(sid) and self._until.get(sid, 0.0) > time.monotonic()

    def close(self, sid: str) -> None:
        with self._lock:
            self._until.pop(sid, None)


class LoginLimiter:
    """Backoff on failed logins, per client and overall. `wait_s` before trying; `failed`,
    `succeeded` after."""

    FREE = 5  # failures a client may make before it has to wait
    MAX_WAIT_S = 300.0
    GLOBAL_WINDOW_S = 60.0
    GLOBAL_FAILURES = 100  # failures from everyone within the window before every login waits
    FORGET_S = 900.0
    MAX_CLIENTS = 10_000  # clients remembered; the oldest are forgotten beyond

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[int, float]] = {}  # client -> (failures, not before)
        self._recent: deque[float] = deque()  # times of recent failures, everyone's

    def wait_s(self, client: str) -> float:
        """Seconds this client must wait before its next try (0: it may try now)."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            _, not_before = self._clients.get(client, (0, 0.0))
            wait = max(0.0, not_before - now)
            if len(self._recent) >= self.GLOBAL_FAILURES:
                wait = max(wait, self._recent[0] + self.GLOBAL_WINDOW_S - now)
            return wait

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            n, not_before = self._clients.pop(client, (0, 0.0))
            if now > not_before + self.FORGET_S:
                n = 0  # a client quiet for long starts afresh (an operator's old typos)
            n += 1
            delay = 0.0 if n < self.FREE else min(self.MAX_WAIT_S, 2.0 ** (n - self.FREE))
            self._clients[client] = (n, now + delay)
            if len(self._clients) > self.MAX_CLIENTS:
                del self._clients[next(iter(self._clients))]
            self._recent.append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _expire(self, now: float) -> None:
        while self._recent and self._recent[0] + self.GLOBAL_WINDOW_S <= now:
            self._recent.popleft()
