"""Completion tokens for lazy tasks: HMAC-signed, scoped to one deployment, run and task.

A token is ``af1.<run>.<task>.<signature>`` with run and task base64url-encoded and the
signature an HMAC-SHA256 (truncated to 128 bits) over the deployment prefix, run, the run's
creation time and task, with the configured secret (``ACKFLOW_SECRET``). The creation time
makes it one run's: a later run reusing the id (after the first expired) refuses it. It
carries no attempt, so it stays valid across engine restarts and retries of the run; what
it completes is the task's current waiting attempt. Anyone holding it can complete that one
task — treat it as a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from runner.errors import AckflowError

VERSION = "af1"


class InvalidToken(AckflowError):
    """A token that is malformed, forged, altered, or from another deployment or run."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, prefix: str, run_id: str, created_ms: int, task: str) -> str:
    msg = "\x1f".join((VERSION, prefix, run_id, str(created_ms), task)).encode()
    return _b64(hmac.new(secret.encode(), msg, hashlib.sha256).digest()[:16])


def make_token(secret: str, prefix: str, run_id: str, created_ms: int, task: str) -> str:
    if not secret:
        raise AckflowError("lazy tasks need a secret to sign completion tokens: set ACKFLOW_SECRET")
    sig = _sign(secret, prefix, run_id, created_ms, task)
    return ".".join((VERSION, _b64(run_id.encode()), _b64(task.encode()), sig))


def parse_token(token: str) -> tuple[str, str]:
    """The (run id, task) a well-formed token names — not yet verified (see `check_token`)."""
    if not isinstance(token, str) or not token.strip() or len(token) > 1024:
        raise InvalidToken("not a completion token")
    parts = token.strip().split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise InvalidToken("not a completion token (expected af1.<run>.<task>.<signature>)")
    try:
        run_id, task = _unb64(parts[1]).decode(), _unb64(parts[2]).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidToken("not a completion token (bad encoding)") from None
    if not run_id or not task:
        raise InvalidToken("not a completion token (no run or task)")
    return run_id, task


def check_token(secret: str, prefix: str, token: str, created_ms: int) -> None:
    """`InvalidToken` unless ``token`` was made for its run as created at ``created_ms``."""
    run_id, task = parse_token(token)
    if not secret:
        raise AckflowError("cannot check completion tokens: ACKFLOW_SECRET is not set")
    want = _sign(secret, prefix, run_id, created_ms, task).encode()
    if not hmac.compare_digest(token.strip().rsplit(".", 1)[1].encode(), want):
        raise InvalidToken(
            "invalid completion token: its signature does not match "
            "(forged, altered, from another deployment, or for an earlier run with this id)"
        )
