"""What every HTTP request passes before the app: method, size and Host checks, and the log line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ackflow.http")

MAX_HEADERS = 100
MAX_HEAD = 32 * 1024  # bytes of all headers
MAX_TARGET = 8 * 1024  # bytes of path and query
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_UNSAFE_LOG = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a request line cannot forge log lines."""
    return _UNSAFE_LOG.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _canonical(name: bytes) -> bytes:
    """``set-cookie`` -> ``Set-Cookie``: names as clients have always seen them from this server."""
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))


def _host_name(host: str) -> str:
    """The name part of a Host header or of an Origin's netloc (port dropped), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


host_name = _host_name  # for the API's reads without a token (runner.ops.http.rest)


def allowed_host_names(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    names = {*LOCAL_HOSTS, bind, *extra}
    out = set()
    for n in names:
        n = n.strip().lower()
        if n:
            out.add(f"[{n.strip('[]')}]" if ":" in n.strip("[]") else n)
    return frozenset(out)


class Guard:
    """What every request passes before the app (plain ASGI, so it sees the raw request):

    - only GET, HEAD and POST (501; and DELETE of a schedule, /v1/schedules/NAME), a target of at most `MAX_TARGET` bytes (414), at most
      `MAX_HEADERS` headers of `MAX_HEAD` bytes in all (431), no Transfer-Encoding
      (411: a chunked body could hide a request from a proxy in front);
    - the Host header must name this server (DNS rebinding), except for the probes and the
      token-authenticated /v1/ API that other machines call;
    - an answer sent before the body was read whole closes the connection (the rest of the
      body must never be taken for the next request);
    - one escaped log line per request.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "0")
        body_left = not (length == "0" and "transfer-encoding" not in headers)
        status = 0

        async def reading() -> Message:
            nonlocal body_left
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_left = False
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(_canonical(k), v) for k, v in message.get("headers", [])]
                if body_left:
                    headers.append((b"Connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope, headers)
        try:
            if refusal is not None:
                await refusal(scope, reading, sending)
            else:
                await self.app(scope, reading, sending)
        finally:
            raw = scope.get("raw_path") or scope["path"].encode()
            query = scope.get("query_string") or b""
            line = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            client = scope.get("client") or ("-", 0)
            log.info('%s "%s %s" %s', client[0], scope["method"], _printable(line[:2000]), status)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> Response | None:
        if scope["method"] not in ("GET", "HEAD", "POST") and not (
            scope["method"] == "DELETE" and scope["path"].startswith("/v1/schedules/")
        ):
            return PlainTextResponse("method not supported", 501)
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_TARGET:
            return PlainTextResponse("request target too long", 414)
        if (
            len(scope["headers"]) > MAX_HEADERS
            or sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEAD
        ):
            return PlainTextResponse("too many or too large headers", 431)
        if "transfer-encoding" in headers:
            return JSONResponse({"error": "send the body with a Content-Length, not chunked"}, 411)
        path = scope["path"]
        if path not in ("/healthz", "/readyz") and not path.startswith("/v1/"):
            if _host_name(headers.get("host", "")) not in self.hosts:
                return PlainTextResponse(
                    "unknown Host: this server answers only to its configured names (--allow-host)", 400
                )
        return None
