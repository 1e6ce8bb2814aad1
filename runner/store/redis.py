"""The Redis state store: each commit is one Lua script, atomic and idempotent by event id.

The scripts are runner/store/lua/*.lua (commit, claim, beat), each with its KEYS/ARGV layout
in its header; the methods here build those arguments. The listings of runs (by status and
flow) are runner/store/redis_listings.py's.

With its redis_*.py parts it is the Redis adapter, the only modules that import redis
(tests/unit/test_layers.py). redis-py 8 retries a command after a socket timeout, so a commit
that did execute may be sent again; the script therefore checks the event id first and answers
a repeat as a duplicate, never applying it twice. Every guard is checked before the first
write, because a Lua script that fails half way is not rolled back.

Durability: a commit is as durable as the server's persistence. Run Redis with
``appendonly yes`` and ``appendfsync always`` to lose nothing acknowledged on power loss
(``everysec`` may lose about a second), and ``maxmemory-policy noeviction``;
`runner.engine.durability` checks this (`durability_settings`) at start and after each reconnect
(`session` counts the connections made), and keeps the deployment epoch (`epoch`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.exceptions

from runner.config import Config, redact_url
from runner.errors import StoreError, StoreUnavailable
from runner.protocol import unpack
from runner.store import Beat, Commit, CommitResult, DueTimer, Watch, keys, lua
from runner.store.redis_commit import commit_args, commit_pipelined, commit_result
from runner.store.redis_errors import REDIS_ERRORS, translate
from runner.store.redis_fleet import Fleet
from runner.store.redis_flows import FlowRegistry
from runner.store.redis_listings import RunListings
from runner.store.redis_replicas import Replicas
from runner.store.redis_schedules import ScheduleStore
from runner.store.redis_watch import watch_channel


def _b(value: Any) -> bytes:
    """redis-py's stubs say bytes | str; with decode_responses off it is always bytes."""
    return value if isinstance(value, bytes) else str(value).encode()


class RedisStore(ScheduleStore):
    """Implements `runner.store.Store` on one Redis server."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._prefix = config.prefix
        self._ix_root = keys.index_root(config.prefix, not self._GLOBAL)
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._claim: Any = None
        self._beat: Any = None
        self._lock = threading.Lock()
        self._connections = 0  # connections made so far: a reconnect changes `session`
        self._replicas = Replicas(config)
        self._listings = RunListings(lambda: self.client, config.prefix, self._ix_root)
        self._flows = FlowRegistry(lambda: self.client, self._ix_root)
        self._catalogue = FlowRegistry(
            lambda: self.client, self._ix_root, keys.catalogue_index, keys.catalogue_versions
        )
        self._fleet = Fleet(lambda: self.client, self._ix_root)

    def _on_connect(self, conn: Any) -> None:
        """redis-py's hook for each new connection (the first and every reconnect)."""
        conn.on_connect()
        self._connections += 1

    @property
    def client(self) -> redis.Redis:
        """The connection pool, made on first use (never at import or construction)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        c = redis.Redis.from_url(
                            self._config.redis_url,
                            socket_timeout=self._config.connect_timeout_s * 2,
                            socket_connect_timeout=self._config.connect_timeout_s,
                            health_check_interval=30,
                            redis_connect_func=self._on_connect,
                        )
                    except ValueError as e:
                        raise StoreError(f"bad redis URL {redact_url(self._config.redis_url)}: {e}") from None
                    self._script = c.register_script(lua.COMMIT)
                    self._claim = c.register_script(lua.CLAIM)
                    self._beat = c.register_script(lua.BEAT)
                    self._client = c
        return self._client

    def _k(self, run_id: str, part: str) -> str:
        return keys.run_key(self._prefix, run_id, part)

    def ping(self) -> None:
        try:
            self.client.ping()
        except REDIS_ERRORS as e:
            raise StoreUnavailable(
                f"cannot reach redis at {redact_url(self._config.redis_url)}: {e}"
            ) from None

    def read(self, run_id: str, wants: Mapping[str, Sequence[str]]) -> dict[str, list[bytes | None]]:
        try:
            pipe = self.client.pipeline(transaction=False)
            parts = [p for p, fs in wants.items() if fs]
            for p in parts:
                pipe.hmget(self._k(run_id, p), list(wants[p]))
            values = pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e
        out: dict[str, list[bytes | None]] = {p: [] for p in wants}
        out.update(zip(parts, values, strict=True))
        return out

    def read_all(self, run_id: str, part: str) -> dict[str, bytes]:
        try:
            raw = self.client.hgetall(self._k(run_id, part))
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return {_b(k).decode(): _b(v) for k, v in raw.items()}

    # Set by the cluster store (runner/store/redis_cluster.py): whether the commit script keeps
    # the global indexes itself, and the publish command of the notify channels.
    _GLOBAL = True
    _PUBLISH = "PUBLISH"

    def commit(self, c: Commit) -> CommitResult:
        run_keys, argv = self._commit_args(c)
        reply = self._eval_durably("_script", lua.COMMIT, run_keys, argv)
        return commit_result(reply)

    def _commit_args(self, c: Commit) -> tuple[list[str], list[Any]]:
        """The commit script's KEYS and ARGV (runner/store/lua/commit.lua)."""
        return commit_args(self._prefix, c, self._GLOBAL, self._PUBLISH)

    def read_many(
        self, reads: Sequence[tuple[str, Mapping[str, Sequence[str]]]]
    ) -> list[dict[str, list[bytes | None]]]:
        try:
            pipe = self.client.pipeline(transaction=False)
            for run_id, wants in reads:
                for p, fs in wants.items():
                    if fs:
                        pipe.hmget(self._k(run_id, p), list(fs))
            values = iter(pipe.execute())
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return [{p: next(values) if fs else [] for p, fs in wants.items()} for _, wants in reads]

    def commit_many(self, commits: Sequence[Commit]) -> list[CommitResult]:
        """All the commit scripts in one pipeline (and, when replicas are wanted, one WAIT
        after them, covering every write of the connection)."""
        if len(commits) < 2:
            return [self.commit(c) for c in commits]
        client = self.client  # creates the script objects on first use
        try:
            replies = commit_pipelined(
                client,
                self._script,
                [self._commit_args(c) for c in commits],
                self._replicas,
                self._config.redis_wait_timeout_ms,
            )
        except REDIS_ERRORS as e:
            self._after_error(e, client)
            raise translate(e) from e
        # a script that failed on its own (a bug, not an outage) fails again alone, to raise
        return [
            self.commit(c) if isinstance(r, Exception) else commit_result(r)
            for c, r in zip(commits, replies, strict=True)
        ]

    # --- waiting for replicas -----------------------------------------------------------------

    def _node_client(self, key: str) -> redis.Redis:
        """The client of the server that holds ``key`` (one server here; a cluster's master)."""
        return self.client

    def _eval_durably(self, which: str, source: str, script_keys: list[str], args: list[Any]) -> Any:
        """Run a writing script on the server that holds its keys and, when replicas are
        wanted, WAIT for them in the same round trip and connection (WAIT covers the writes of
        its own connection; the commit script writes even when it answers a repeat, so a
        repeat waits for the first commit's replication too).
        """
        client = self.client  # creates the script objects on first use
        script = getattr(self, which)
        try:
            node = self._node_client(script_keys[0])
            wanted = self._replicas.wanted(node)
            if wanted == 0:
                return script(keys=script_keys, args=args, client=node)
            for _ in range(2):
                pipe = node.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(script_keys), *script_keys, *args)
                pipe.execute_command("WAIT", wanted, self._config.redis_wait_timeout_ms)
                reply, acked = pipe.execute(raise_on_error=False)
                if isinstance(reply, redis.exceptions.NoScriptError):
                    node.script_load(source)  # a new or restarted server: load, then once more
                    continue
                if isinstance(reply, Exception):
                    raise reply
                self._replicas.check(acked, wanted)
                return reply
            raise StoreUnavailable("redis lost the script just loaded (restarting?)")
        except REDIS_ERRORS as e:
            self._after_error(e, client)
            raise translate(e) from e

    def _after_error(self, e: Exception, client: Any) -> None:
        """Hook: the cluster store refreshes its slot map after MOVED and connection errors."""

    def count_delivery(self, run_id: str, event_id: str, delta: int = 1) -> int:
        key = self._k(run_id, keys.DELIVERIES)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hincrby(key, event_id, delta)
            pipe.pttl(self._k(run_id, keys.META))
            n, ttl_ms = pipe.execute()
            if ttl_ms > 0:  # a finished run: the count must expire with it
                self.client.pexpire(key, ttl_ms)
            return int(n)
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def mark_sent(self, run_id: str, message_ids: Sequence[str]) -> None:
        if not message_ids:
            return
        try:
            self.client.hdel(self._k(run_id, keys.OUTBOX), *message_ids)
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def mark_sent_many(self, sent: Mapping[str, Sequence[str]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for run_id, message_ids in sent.items():
                if message_ids:
                    pipe.hdel(self._k(run_id, keys.OUTBOX), *message_ids)
            pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def history(self, run_id: str, start: int = 0) -> list[bytes]:
        try:
            return [_b(x) for x in self.client.lrange(self._k(run_id, keys.HISTORY), start, -1)]
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def claim_timers(self, now_ms: int, limit: int, hold_ms: int) -> tuple[list[DueTimer], int | None]:
        client = self.client
        try:
            reply = self._claim(
                keys=[keys.timers_index(self._prefix)],
                args=[now_ms, limit, hold_ms, self._prefix],
                client=client,
            )
        except REDIS_ERRORS as e:
            raise translate(e) from e
        nxt = int(float(reply[0])) if reply[0] else None
        out = []
        for i in range(1, len(reply), 2):
            run_id, timer_id = keys.split_timer_member(_b(reply[i]).decode())
            _due, event = unpack(_b(reply[i + 1]))
            out.append(DueTimer(run_id, timer_id, event))
        return out, nxt

    def remove_timers(self, timers: Sequence[DueTimer]) -> None:
        if not timers:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zrem(
                keys.timers_index(self._prefix), *[keys.timer_member(t.run_id, t.timer_id) for t in timers]
            )
            for t in timers:
                pipe.hdel(self._k(t.run_id, keys.TIMERS), t.timer_id)
            pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def heartbeat(self, run_id: str, task: str, attempt: int, until_ms: int, progress: bytes | None) -> Beat:
        client = self.client
        try:
            leased, status = self._beat(
                keys=[self._k(run_id, keys.LEASES), self._k(run_id, keys.META)],
                args=[
                    task,
                    attempt,
                    until_ms,
                    keys.progress_field(task),
                    progress or b"",
                    keys.notify_channel(self._prefix, run_id),
                    self._PUBLISH,
                ],
                client=client,
            )
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return Beat(bool(leased), _b(status).decode() if status else None)

    def reserve(self, run_id: str, digest: bytes) -> bytes | None:
        key = self._k(run_id, keys.META)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hsetnx(key, "digest", digest)
            pipe.hget(key, "digest")
            created, current = pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return None if created else current

    # --- the flow registry (runner/store/redis_flows.py) -------------------------------------

    def put_flow(self, name: str, digest: str, spec: bytes, info: bytes) -> None:
        self._flows.put(name, digest, spec, info)

    def get_flow(self, name: str, digest: str) -> bytes | None:
        return self._flows.get(name, digest)

    def list_flows(self) -> dict[str, bytes]:
        return self._flows.latest()

    def flow_digests(self, name: str) -> list[str]:
        return self._flows.digests(name)

    def put_task(self, name: str, digest: str, entry: bytes, info: bytes) -> None:
        self._catalogue.put(name, digest, entry, info)

    def get_task(self, name: str, digest: str) -> bytes | None:
        return self._catalogue.get(name, digest)

    def list_tasks(self) -> dict[str, bytes]:
        return self._catalogue.latest()

    # --- listings (runner/store/redis_listings.py) -------------------------------------------

    def list_runs(self, status: str | None, limit: int) -> list[str]:
        return self._listings.list_runs(status, limit)

    def page_runs(
        self,
        status: str | None,
        flow: str | None,
        since_ms: int = 0,
        before_ms: int | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[str, int]], int | None]:
        return self._listings.page_runs(status, flow, since_ms, before_ms, limit)

    def count_runs(self, status: str | None) -> int:
        return self._listings.count_runs(status)

    def watch(self, run_id: str) -> Watch:
        try:
            return watch_channel(self.client, keys.notify_channel(self._prefix, run_id))
        except REDIS_ERRORS as e:
            raise translate(e) from e

    def session(self) -> int:
        return self._connections

    def durability_settings(self) -> dict[str, str] | None:
        out: dict[str, str] = {}
        try:
            for name in ("appendonly", "appendfsync", "maxmemory-policy", "save"):
                got: Mapping[Any, Any] = self.client.config_get(name)
                value = got.get(name, got.get(name.encode()))  # str or bytes keys, by version
                out[name] = "" if value is None else _b(value).decode()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise translate(e) from e
        except REDIS_ERRORS:
            return None  # CONFIG disabled, renamed or not permitted (managed Redis)
        return out

    def epoch(self, candidate: str) -> str:
        key = keys.epoch_key(self._prefix)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.set(key, candidate, nx=True)
            pipe.get(key)
            _, current = pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return _b(current).decode()

    def record_lost(self, run_id: str, now_ms: int, keep_s: int) -> bool:
        key = keys.lost_index(self._prefix)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(key, {run_id: now_ms}, nx=True)
            pipe.zremrangebyscore(key, "-inf", now_ms - keep_s * 1000)
            added, _ = pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return bool(added)

    def is_lost(self, run_id: str) -> bool:
        try:
            return self.client.zscore(keys.lost_index(self._prefix), run_id) is not None
        except REDIS_ERRORS as e:
            raise translate(e) from e

    # --- the fleet (runner/store/redis_fleet.py) ------------------------------------------------

    def beat_worker(self, worker_id: str, record: bytes, now_ms: int, keep_s: int) -> None:
        self._fleet.beat_worker(worker_id, record, now_ms, keep_s)

    def workers(self, now_ms: int, keep_s: int) -> list[tuple[str, bytes, int]]:
        return self._fleet.workers(now_ms, keep_s)

    def note_queues(self, queues: Sequence[str], now_ms: int) -> None:
        self._fleet.note_queues(queues, now_ms)

    def noted_queues(self, since_ms: int) -> list[str]:
        return self._fleet.noted_queues(since_ms)

    def delete_prefix(self) -> int:
        """Delete every key under this store's prefix (tests and `ackflow` tooling only)."""
        n = 0
        try:
            for key in self.client.scan_iter(match=f"{self._prefix}:*", count=1000):
                n += self.client.unlink(key)
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return n

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
