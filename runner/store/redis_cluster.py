"""The state store on a Redis Cluster (``redis+cluster://`` / ``rediss+cluster://``).

The same contract and the same commit script as the one-server store (`RedisStore`), with
what a cluster changes:

- A script may touch keys of one slot only. A commit therefore writes only the run's own
  keys (all tagged ``{<run>}``) and counts the run's status changes in meta ``ix``; the global
  structures are brought up to date *after* the commit, by the store:
  - the run, status and flow indexes, all under one hash tag ``{<prefix>}`` (keys.index_root),
    by `index.lua`, which applies a status change only if it is newer than the one indexed
    (so two engines, or a repair, never let an older status win);
  - the timers, sharded into `keys.TIMER_BUCKETS` buckets (a zset and a payload hash each,
    one slot), so claiming them never reads a run's keys.
  That second step is an outbox of its own, kept in the run's keys: if the engine dies (or
  the cluster fails) between the two, the event is not acknowledged, comes back, its commit
  answers "duplicate", and the store repairs the indexes and timers from the run's own state
  (meta and timers) before the engine republishes the messages: the same repair as for the
  message outbox. Listings check each run's status, since an index may lag a moment.
- Wake-ups use sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7+), which a cluster routes to
  the slot's shard instead of broadcasting.
- MOVED/ASK (resharding), TRYAGAIN, CLUSTERDOWN and a failover in progress are outages
  (`StoreUnavailable`): the engine waits them out and the event comes again; the slot map is
  refreshed after them.
- Each commit, and each write of the second step, waits for a replica (`RedisStore._eval_durably`).

The epoch and the lost-runs index are single keys on one master: a loss of that master's data
is what the epoch detects there (each master holds its own share of the runs).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import redis
import redis.exceptions
from redis.cluster import ClusterNode, RedisCluster

from runner.config import Config, redact_url, redis_nodes
from runner.errors import StoreError
from runner.protocol import pack, unpack
from runner.states import RUN_STATES
from runner.store import Commit, CommitResult, DueTimer, Watch, keys, lua
from runner.store.redis import RedisStore, _b
from runner.store.redis_commit import commit_result
from runner.store.redis_errors import REDIS_ERRORS, translate
from runner.store.redis_watch import watch_shard_channel

_REFRESH_AFTER = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
)


class RedisClusterStore(RedisStore):
    """Implements `runner.store.Store` on a Redis Cluster."""

    _GLOBAL = False
    _PUBLISH = "SPUBLISH"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._index_script: Any = None
        self._claim_bucket: Any = None
        self._schedule_script: Any = None
        self._next_bucket = random.randrange(keys.TIMER_BUCKETS)  # engines start apart

    @property
    def client(self) -> Any:  # a RedisCluster; typed Any like the scripts it registers
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()  # type: ignore[assignment]
        return self._client

    def _connect(self) -> RedisCluster:
        url = self._config.redis_url
        nodes = redis_nodes(url)
        scheme, _, rest = url.partition("://")
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        username, _, password = userinfo.partition(":")
        try:
            c = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in nodes],  # type: ignore[no-untyped-call]
                username=unquote(username) or None,
                password=unquote(password) or None,
                ssl=scheme.lower().startswith("rediss"),
                socket_timeout=self._config.connect_timeout_s * 2,
                socket_connect_timeout=self._config.connect_timeout_s,
                health_check_interval=30,
                redis_connect_func=self._on_connect,
            )
        except REDIS_ERRORS as e:
            raise translate(e) from e
        except ValueError as e:
            raise StoreError(f"bad redis URL {redact_url(url)}: {e}") from None
        self._script = c.register_script(lua.COMMIT)
        self._claim = c.register_script(lua.CLAIM)
        self._beat = c.register_script(lua.BEAT)
        self._index_script = c.register_script(lua.INDEX)
        self._claim_bucket = c.register_script(lua.CLAIM_BUCKET)
        self._schedule_script = c.register_script(lua.SCHEDULE)
        return c

    def _node_client(self, key: str) -> redis.Redis:
        client = self.client
        return client.get_redis_connection(client.get_node_from_key(key))  # type: ignore[no-any-return]

    def _after_error(self, e: Exception, client: Any) -> None:
        if isinstance(e, _REFRESH_AFTER):
            try:  # the slot map or the masters changed: learn the new ones before the retry
                client.nodes_manager.initialize()
            except REDIS_ERRORS:
                pass  # the cluster is still failing over: the next attempt tries again

    # --- commits ----------------------------------------------------------------------------

    def commit(self, c: Commit) -> CommitResult:
        run_keys, argv = self._commit_args(c)
        reply = self._eval_durably("_script", lua.COMMIT, run_keys, argv)
        result = commit_result(reply)
        if result.applied:
            seq = _b(reply[1]).decode() if len(reply) > 1 else ""
            status = c.status_change[1] if c.status_change else ""
            if seq and status:
                flow = c.flow or self._flow_of(c.run_id)
                self._index_run(c.run_id, int(seq), status, c.created_ms, flow)
            self._schedule(c.run_id, c.timers, c.cancel_timers)
        elif result.outcome == "duplicate":
            self._repair(c.run_id)
        return result

    def read_many(
        self, reads: Sequence[tuple[str, Mapping[str, Sequence[str]]]]
    ) -> list[dict[str, list[bytes | None]]]:
        """One read at a time: the runs' keys are on different nodes."""
        return [self.read(run_id, wants) for run_id, wants in reads]

    def commit_many(self, commits: Sequence[Commit]) -> list[CommitResult]:
        """One commit at a time: each is followed by its own index and timer updates."""
        return [self.commit(c) for c in commits]

    def _flow_of(self, run_id: str) -> str:
        try:
            raw = self.client.hget(self._k(run_id, keys.META), "flow")
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return _b(raw).decode() if raw else ""

    def _index_run(self, run_id: str, seq: int, status: str, created_ms: int, flow: str) -> None:
        """Put the run under ``status`` in the global indexes, unless a later change is there."""
        root = self._ix_root
        script_keys = [keys.index_numbers(root), keys.runs_index(root)]
        script_keys += [keys.status_index(root, s) for s in RUN_STATES]
        if flow:
            script_keys.append(keys.flow_index(root, flow))
            script_keys += [keys.flow_status_index(root, flow, s) for s in RUN_STATES]
        args = [run_id, seq, status, created_ms, len(RUN_STATES), *RUN_STATES]
        self._eval_durably("_index_script", lua.INDEX, script_keys, args)

    def _schedule(self, run_id: str, timers: Mapping[str, tuple[int, bytes]], cancel: Sequence[str]) -> None:
        """Add (and forget) the run's timers in its timer bucket, then wait for a replica."""
        if not timers and not cancel:
            return
        args: list[Any] = [len(timers)]
        for tid, (due, event) in timers.items():
            args += [keys.timer_member(run_id, tid), due, pack([due, event])]
        args += [keys.timer_member(run_id, tid) for tid in cancel]
        bucket = keys.timer_bucket_keys(self._prefix, keys.timer_bucket(run_id))
        self._eval_durably("_schedule_script", lua.SCHEDULE, list(bucket), args)

    def _repair(self, run_id: str) -> None:
        """After a repeated event: make the indexes and the timer bucket hold what the run's
        own keys say (the step after its first commit may not have happened)."""
        client = self.client
        try:
            node = self._node_client(self._k(run_id, keys.META))
            pipe = node.pipeline(transaction=False)
            pipe.hmget(self._k(run_id, keys.META), ["ix", "status", "created_ms", "flow"])
            pipe.hgetall(self._k(run_id, keys.TIMERS))
            (seq, status, created, flow), timers = pipe.execute()
        except REDIS_ERRORS as e:
            self._after_error(e, client)
            raise translate(e) from e
        if seq and status:
            self._index_run(
                run_id, int(seq), _b(status).decode(), int(created or 0), _b(flow).decode() if flow else ""
            )
        due: dict[str, tuple[int, bytes]] = {}
        for tid, raw in timers.items():
            at, event = unpack(_b(raw))
            due[_b(tid).decode()] = (int(at), event)
        self._schedule(run_id, due, ())

    # --- timers -----------------------------------------------------------------------------

    def claim_timers(self, now_ms: int, limit: int, hold_ms: int) -> tuple[list[DueTimer], int | None]:
        """Claim from every bucket, starting at the next one in turn (so engines that all find
        more than ``limit`` due share the buckets), up to ``limit`` timers."""
        client = self.client
        out: list[DueTimer] = []
        nxt: int | None = None
        start = self._next_bucket
        self._next_bucket = (start + 1) % keys.TIMER_BUCKETS
        try:
            for i in range(keys.TIMER_BUCKETS):
                bucket = (start + i) % keys.TIMER_BUCKETS
                room = limit - len(out)
                reply = self._claim_bucket(
                    keys=list(keys.timer_bucket_keys(self._prefix, bucket)),
                    args=[now_ms, max(room, 0), hold_ms],
                    client=client,
                )
                if reply[0]:
                    first = int(float(reply[0]))
                    nxt = first if nxt is None else min(nxt, first)
                for j in range(1, len(reply), 2):
                    run_id, timer_id = keys.split_timer_member(_b(reply[j]).decode())
                    _due, event = unpack(_b(reply[j + 1]))
                    out.append(DueTimer(run_id, timer_id, event))
        except REDIS_ERRORS as e:
            self._after_error(e, client)
            raise translate(e) from e
        return out, nxt

    def remove_timers(self, timers: Sequence[DueTimer]) -> None:
        if not timers:
            return
        client = self.client
        try:
            pipe = client.pipeline(transaction=False)
            for t in timers:
                zset, payloads = keys.timer_bucket_keys(self._prefix, keys.timer_bucket(t.run_id))
                member = keys.timer_member(t.run_id, t.timer_id)
                pipe.zrem(zset, member)
                pipe.hdel(payloads, member)
                pipe.hdel(self._k(t.run_id, keys.TIMERS), t.timer_id)
            pipe.execute()
        except REDIS_ERRORS as e:
            self._after_error(e, client)
            raise translate(e) from e

    # --- the rest ---------------------------------------------------------------------------

    def watch(self, run_id: str) -> Watch:
        try:
            return watch_shard_channel(self.client, keys.notify_channel(self._prefix, run_id))
        except REDIS_ERRORS as e:
            # the channel's node is dead or moved: a waiting client may send nothing else,
            # so this is where its slot map must learn the new master
            self._after_error(e, self.client)
            raise translate(e) from e

    def durability_settings(self) -> dict[str, str] | None:
        """The weakest settings over the masters (the settings of one that would lose most)."""
        out: dict[str, str] = {}
        try:
            for name in ("appendonly", "appendfsync", "maxmemory-policy", "save"):
                per_node: Mapping[Any, Any] = self.client.config_get(
                    name, target_nodes=RedisCluster.PRIMARIES
                )
                values = {_one_setting(v, name) for v in _per_node(per_node)}
                out[name] = _weakest(name, values)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise translate(e) from e
        except REDIS_ERRORS:
            return None
        return out

    def delete_prefix(self) -> int:
        n = 0
        try:
            for pattern in (f"{self._prefix}:*", f"{self._ix_root}:*"):
                for key in self.client.scan_iter(match=pattern, count=1000):
                    n += self.client.unlink(key)
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return n


def _per_node(reply: Mapping[Any, Any]) -> list[Mapping[Any, Any]]:
    """CONFIG GET sent to several nodes answers {node: settings}; to one, the settings."""
    values = list(reply.values())
    if values and all(isinstance(v, Mapping) for v in values):
        return values
    return [reply]


def _one_setting(got: Mapping[Any, Any], name: str) -> str:
    value = got.get(name, got.get(name.encode()))
    return "" if value is None else _b(value).decode()


_WEAK_FIRST = {"appendonly": ("no", "yes"), "appendfsync": ("no", "everysec", "always")}


def _weakest(name: str, values: set[str]) -> str:
    order = _WEAK_FIRST.get(name)
    if order is not None:
        for v in order:
            if v in values:
                return v
    if name == "maxmemory-policy":
        others = sorted(values - {"noeviction"})
        return others[0] if others else "noeviction"
    return sorted(values)[0] if values else ""
