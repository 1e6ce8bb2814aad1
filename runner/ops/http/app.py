"""``ackflow serve``'s server: the routes of `runner.ops.http.api` behind the request guard, on
uvicorn (`runner.ops.http.server`), with the limits that keep slow or many clients harmless."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.applications import Starlette

from runner.client import Client
from runner.local import LocalRuntime
from runner.ops.http import tokens
from runner.ops.http.api import Api
from runner.ops.http.guard import Guard, allowed_host_names
from runner.ops.http.rest import Rest
from runner.ops.http.server import HttpServer
from runner.ops.http.task_forms import TaskForms
from runner.ops.http.tokens import NO_TOKENS, ApiTokens

MAX_CONNECTIONS = 200  # open connections; beyond, 503
REQUEST_TIMEOUT_S = 30.0  # to send a whole request (head and body)
WRITE_TIMEOUT_S = 30.0  # a client that reads nothing of an answer for this long is dropped


class CompletionServer(HttpServer):
    """The app on its socket, with what `ackflow serve` and local mode need to reach."""

    def __init__(
        self, api: Api, host: str, port: int, allowed_hosts: Iterable[str], tokens: ApiTokens = NO_TOKENS
    ) -> None:
        hosts = allowed_host_names(host, allowed_hosts)
        app = Starlette(
            routes=[*api.routes(), *Rest(api, tokens, hosts).routes(), *TaskForms(api).routes()],
            exception_handlers={404: api.not_found, 405: api.wrong_method},
        )
        super().__init__(
            Guard(app, hosts),
            host,
            port,
            max_connections=MAX_CONNECTIONS,
            request_timeout_s=REQUEST_TIMEOUT_S,
            write_timeout_s=WRITE_TIMEOUT_S,
        )
        self.api = api

    def close_clients(self) -> None:
        """Close the pooled clients of both pools (after the server stopped)."""
        self.api.pool.close()
        self.api.pages.close()


def make_server(
    host: str,
    port: int,
    factory: Callable[[], Client],
    max_body: int,
    operator_token: str = "",
    completions: bool = True,
    allowed_hosts: Iterable[str] = (),
    api_tokens: ApiTokens = NO_TOKENS,
) -> CompletionServer:
    """Bind ``host:port`` (0: any free port); serve with `serve_forever` or `start`.
    ``allowed_hosts``: host names browsers may reach the dashboard by, besides 127.0.0.1,
    localhost, [::1] and ``host``. ``api_tokens``: the REST API's (`runner.ops.http.tokens`).
    Raises `AckflowError` for an operator token under 16 characters."""
    api = Api(factory, max_body, operator_token, completions)
    return CompletionServer(api, host, port, allowed_hosts, api_tokens)


def serve_local(
    rt: LocalRuntime, host: str = "127.0.0.1", port: int = 0, allowed_hosts: Iterable[str] = ()
) -> str:
    """Start a local-mode runtime's HTTP server (dashboard, lazy-task completions) in a
    background thread, once; return its URL. The runtime closes it. ``allowed_hosts``: see
    `make_server`."""
    if rt.server is None:
        rt.server = make_server(
            host,
            port,
            rt.client_factory,
            rt.config.max_payload_bytes,
            operator_token=rt.config.operator_token,
            allowed_hosts=allowed_hosts,
            api_tokens=tokens.load(rt.config.api_token, rt.config.api_tokens_file),
        ).start()
    return str(rt.server.url)
