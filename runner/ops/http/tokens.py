"""The REST API's bearer tokens and their scopes.

Three scopes: ``read`` (GET runs, their history, flows, workers, queues), ``submit`` (POST
/v1/runs) and ``control`` (cancel, pause, resume, retry a run; complete or fail its waiting
tasks). ``ACKFLOW_API_TOKEN`` is one token with every scope; ``ACKFLOW_API_TOKENS_FILE`` names
a file of scoped ones, a token and its comma-separated scopes a line::

    # comments and blank lines are skipped
    3f9c...long-random...  read
    a71d...long-random...  read,submit,control

Tokens are at least `MIN_TOKEN_CHARS` characters (a guessable one refuses the server's start)
and compared in constant time with every configured token (`hmac.compare_digest` of their
SHA-256 digests, so not even a token's length shows), so the time an answer takes tells
nothing of how much of a guess was right, nor which token matched.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError

SCOPES = ("read", "submit", "control")
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ApiTokens:
    """The configured tokens (their SHA-256 digests) and the scopes of each; empty: none
    configured."""

    tokens: tuple[tuple[bytes, frozenset[str]], ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.tokens)

    def scopes(self, presented: str) -> frozenset[str] | None:
        """The scopes of ``presented``; None if it is no configured token. Every token is
        compared, whichever matches (constant time in the presented value)."""
        given = _digest(presented)
        found: frozenset[str] | None = None
        for token, scopes in self.tokens:
            if hmac.compare_digest(given, token):
                found = scopes
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _check(token: str, where: str) -> None:
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where}: an API token must be at least {MIN_TOKEN_CHARS} characters (it has {len(token)}): "
            "use e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


def parse_tokens_file(text: str, name: str = "ACKFLOW_API_TOKENS_FILE") -> list[tuple[str, frozenset[str]]]:
    """Lines ``TOKEN SCOPE[,SCOPE...]``; `ConfigError` naming the line for anything else."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(f"{name} line {n}: expected 'TOKEN SCOPE,SCOPE' (scopes: {', '.join(SCOPES)})")
        token, raw = parts
        _check(token, f"{name} line {n}")
        scopes = frozenset(s.strip() for s in raw.split(",") if s.strip())
        unknown = sorted(scopes - set(SCOPES))
        if unknown or not scopes:
            raise ConfigError(
                f"{name} line {n}: unknown scope {', '.join(unknown) or '(none)'} "
                f"(scopes: {', '.join(SCOPES)})"
            )
        out.append((token, scopes))
    return out


def load(api_token: str, tokens_file: str) -> ApiTokens:
    """The tokens of ``ACKFLOW_API_TOKEN`` (every scope) and ``ACKFLOW_API_TOKENS_FILE``."""
    tokens: list[tuple[str, frozenset[str]]] = []
    if api_token:
        _check(api_token, "ACKFLOW_API_TOKEN")
        tokens.append((api_token, frozenset(SCOPES)))
    if tokens_file:
        try:
            text = Path(tokens_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"ACKFLOW_API_TOKENS_FILE {tokens_file!r} cannot be read: {e}") from None
        tokens.extend(parse_tokens_file(text, f"ACKFLOW_API_TOKENS_FILE {tokens_file}"))
    return ApiTokens(tuple((_digest(t), s) for t, s in tokens))


NO_TOKENS = ApiTokens()
