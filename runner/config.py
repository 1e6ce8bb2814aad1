"""Settings: one frozen, validated dataclass, read from ``ACKFLOW_*`` environment variables
(over an optional TOML file of the same keys, `runner.config_file`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from runner import config_file as config_file_module
from runner.errors import ConfigError

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Config:
    """Everything an engine, worker or client needs to know; constructors take this."""

    # One AMQP URL, or several separated by ';' (the nodes of one cluster, same vhost): every
    # connect tries each in turn, from a per-process random start ("random") or from the first
    # ("listed", for a preferred node with the others as fallbacks).
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    broker_host_order: str = "random"  # or "listed"
    # redis:// or rediss:// (one server, or the master of a server with replicas), unix://, or a
    # Redis Cluster: redis+cluster://host:port[,host:port...] (rediss+cluster:// with TLS).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Before a commit counts as done (and its event is acknowledged), wait until this many
    # replicas hold it (Redis WAIT), for up to redis_wait_timeout_ms: -1 = 1 when the server
    # has replicas, else 0; 0 = never wait.
    redis_wait_replicas: int = -1
    redis_wait_timeout_ms: int = 1000
    prefix: str = "ackflow"
    queue_type: str = "quorum"  # or "classic"
    delivery_limit: int = 5
    engine_prefetch: int = 32
    heartbeat_s: int = 10
    connect_timeout_s: float = 5.0
    confirm_timeout_s: float = 30.0
    reconnect_max_s: float = 5.0
    max_payload_bytes: int = 1_048_576
    retention_s: int = 7 * 24 * 3600
    commit_retries: int = 50
    ack_after_s: float = 5.0  # a task running longer gives its delivery back and takes a lease
    lease_s: float = 30.0  # a long task's lease; its worker renews it every lease_s / 3
    timer_poll_s: float = 0.5  # longest an engine waits before looking for due timers
    # At start, engines and workers wait this long for RabbitMQ and Redis to answer (jittered,
    # logged retries) before exiting with 3: services restarted together come up in any order.
    startup_wait_s: float = 60.0
    secret: str = ""  # signs lazy tasks' completion tokens (HMAC); the same on every process
    operator_token: str = ""  # lets the dashboard's users control runs; unset: read-only
    # The REST API's bearer tokens (runner.ops.http.tokens): api_token has every scope; the
    # file holds scoped ones, one "TOKEN SCOPE,SCOPE" a line. Neither set: the API takes no writes
    api_token: str = ""
    api_tokens_file: str = ""
    # Engines and serve refuse to start (exit 3) unless Redis is known durable (runner.engine.durability)
    require_durable_store: bool = False
    # How often `ackflow serve` looks at Redis for a loss of its data or, after a reconnect, a
    # change of its settings (engines do both after each reconnect of their own)
    store_check_s: float = 30.0
    # Each worker records itself in Redis this often (`ackflow workers`); one silent for three
    # times as long is shown as lost, and forgotten after worker_keep_s
    worker_beat_s: float = 5.0
    worker_keep_s: int = 600

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(f"prefix {self.prefix!r} must be 1-64 of [A-Za-z0-9_-]")
        broker_urls(self.broker_url)  # raises ConfigError if it is not a valid list
        redis_nodes(self.redis_url)  # raises ConfigError if it is not a valid Redis URL
        if self.redis_wait_replicas < -1:
            raise ConfigError("redis_wait_replicas must be -1 (auto), 0 (off) or a number of replicas")
        if self.redis_wait_timeout_ms < 1:
            raise ConfigError("redis_wait_timeout_ms must be at least 1")
        if self.broker_host_order not in ("random", "listed"):
            raise ConfigError(
                f"broker_host_order must be 'random' or 'listed', not {self.broker_host_order!r}"
            )
        if self.queue_type not in ("quorum", "classic"):
            raise ConfigError(f"queue_type must be 'quorum' or 'classic', not {self.queue_type!r}")
        for name in ("delivery_limit", "engine_prefetch", "max_payload_bytes", "commit_retries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.heartbeat_s < 0:
            raise ConfigError("heartbeat_s must be >= 0 (0 turns AMQP heartbeats off)")
        if self.retention_s < 1:
            raise ConfigError("retention_s must be at least 1")
        if self.ack_after_s < 0:
            raise ConfigError("ack_after_s must be >= 0")
        if self.startup_wait_s < 0:
            raise ConfigError("startup_wait_s must be >= 0")
        if self.lease_s <= 0 or self.timer_poll_s <= 0 or self.store_check_s <= 0 or self.worker_beat_s <= 0:
            raise ConfigError("lease_s, timer_poll_s, store_check_s and worker_beat_s must be > 0")
        if self.worker_keep_s < 1:
            raise ConfigError("worker_keep_s must be at least 1")
        if not isinstance(self.require_durable_store, bool):
            raise ConfigError(
                f"require_durable_store must be true or false, not {self.require_durable_store!r}"
            )

    @classmethod
    def from_env(
        cls, env: dict[str, str] | None = None, *, config_file: str | None = None, **overrides: Any
    ) -> Config:
        """Read ``ACKFLOW_<FIELD>`` variables over the TOML file named by ``config_file`` or
        ``ACKFLOW_CONFIG`` (if any, `runner.config_file`); keyword overrides win over both."""
        return cls.load(env, config_file=config_file, **overrides)[0]

    @classmethod
    def load(
        cls, env: dict[str, str] | None = None, *, config_file: str | None = None, **overrides: Any
    ) -> tuple[Config, dict[str, str]]:
        """`from_env`, and where each setting came from: "default", "file <path>",
        "env ACKFLOW_<FIELD>" or "option"."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        sources = {f.name: "default" for f in fields(cls)}
        path = config_file or env.get(config_file_module.ENV_VAR) or None
        if path:
            types = {f.name: type(f.default) for f in fields(cls)}
            for name, value in config_file_module.read(path, types).items():
                values[name], sources[name] = value, f"file {path}"
        for f in fields(cls):
            var = "ACKFLOW_" + f.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            kind: Any = type(f.default)
            if kind is bool:  # bool("false") is True: read the words instead
                kind = _parse_bool
            try:
                values[f.name] = kind(raw)
            except ValueError as e:
                what = "boolean (true/false)" if kind is _parse_bool else kind.__name__
                raise ConfigError(f"{var}={raw!r} is not a valid {what}") from e
            sources[f.name] = f"env {var}"
        for k, v in overrides.items():
            if v is not None:
                values[k], sources[k] = v, "option"
        return cls(**values), sources

    def shown(self) -> dict[str, Any]:
        """Every setting, with passwords in URLs and the secrets redacted."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["broker_url"] = redact_url(self.broker_url)
        out["redis_url"] = redact_url(self.redis_url)
        out["secret"] = "***" if self.secret else ""
        out["operator_token"] = "***" if self.operator_token else ""
        out["api_token"] = "***" if self.api_token else ""
        return out

    def __repr__(self) -> str:  # never print the secret
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.shown().items()) + ")"

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """The broker's nodes: ``broker_url`` split at ';'."""
        return broker_urls(self.broker_url)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_AMQP_SCHEMES = ("amqp", "amqps")


def broker_urls(value: str) -> tuple[str, ...]:
    """Split a ';'-separated list of AMQP URLs, checking each (a password holding ';' must be
    written %3B); raise `ConfigError`, never showing a password, if any is not valid or the
    URLs name different virtual hosts (one cluster serves one vhost to ackflow)."""
    urls = tuple(u.strip() for u in value.split(";"))
    vhosts: dict[str, str] = {}
    for n, url in enumerate(urls, 1):
        where = f"broker URL {n} of {len(urls)}" if len(urls) > 1 else "the broker URL"
        shown = redact_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # not its text: it may quote a password cut at a ';'
            raise ConfigError(f"{where} {shown!r} is not a valid URL (a bad port?)") from None
        if parts.scheme not in _AMQP_SCHEMES or not parts.hostname:
            raise ConfigError(
                f"{where} {shown!r} is not an AMQP URL: expected amqp:// or amqps:// with a host,"
                " several separated by ';'"
            )
        if port == 0:
            raise ConfigError(f"{where} {shown!r} has port 0")
        vhosts[shown] = _vhost(parts.path)
    if len(set(vhosts.values())) > 1:
        listed = ", ".join(f"{u} -> {v!r}" for u, v in vhosts.items())
        raise ConfigError(f"the broker URLs name different virtual hosts ({listed}); use one vhost")
    return urls


def _vhost(path: str) -> str:
    """The virtual host of an AMQP URL's path, as kombu reads it ('', '/' and '//' are '/')."""
    name = unquote(path[1:]) if path.startswith("/") else unquote(path)
    return name or "/"


_REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def redis_nodes(url: str) -> tuple[tuple[str, int], ...]:
    """Check a Redis URL; for a cluster URL return its seed nodes (host, port), else ().
    Raise `ConfigError`, never showing a password, if it is not valid."""
    shown = redact_url(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _REDIS_SCHEMES:
        return ()
    if scheme not in CLUSTER_SCHEMES:
        raise ConfigError(
            f"the Redis URL {shown!r} must start with redis://, rediss://, unix:// or, for a Redis"
            " Cluster, redis+cluster:// or rediss+cluster://"
        )
    rest = url.split("://", 1)[1]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    hosts = netloc.rpartition("@")[2]
    nodes = []
    for n, part in enumerate(hosts.split(","), 1):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"seed node {n} of the Redis Cluster URL {shown!r} must be host:port"
                " (several separated by ',')"
            )
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def redact_url(url: str) -> str:
    """Return the URL with any password replaced, for logs and error messages; each URL of a
    ';'-separated list on its own."""
    if ";" in url:  # a piece that is no URL is the rest of a password holding ';': hidden
        return ";".join(_redact_one(u) if "://" in u else "<unparseable url>" for u in url.split(";"))
    return _redact_one(url)


# "scheme://user:": what precedes a URL's password, if it has one (as runner.logs reads it)
_URL_HEAD_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^:\s]*:")


def _redact_one(url: str) -> str:
    """The password runs from the first ':' after "scheme://user" to the URL's last '@', so
    one holding '@', ':', '/' or '#' is hidden whole."""
    head = _URL_HEAD_RE.match(url)
    if head is None:
        return url
    at = url.rfind("@")
    if at > head.end():
        return f"{url[: head.end()]}***{url[at:]}"
    if is_cluster_url(url):  # no '@': seed nodes "host:port,host:port", no password
        return url
    try:  # no '@': "host:port" — or "user:pa", a password cut at a ';'
        urlsplit(url).port  # noqa: B018 - raises if the port is no number
    except ValueError:
        return "<unparseable url>"
    return url
