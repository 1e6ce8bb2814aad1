"""Schedules in the Redis stores: one hash of packed records by name (under the index root, so
on a Redis Cluster it is in the indexes' slot), each change a compare-and-swap script; a
schedule's next firing is a timer of its pseudo run (`keys.schedule_timer_run`), in the timers
index like a run's. Part of the Redis adapter: `RedisStore` (and the cluster store) mix it in.

On one server the swap arms the next firing's timer in the same script. On a cluster the timer
is in another slot: it is armed right after the swap, and a crash between the two is repaired by
the engines' `Firing.reconcile` (arming is idempotent).
"""

from __future__ import annotations

from typing import Any

from runner.protocol import pack
from runner.store import keys
from runner.store.redis_errors import REDIS_ERRORS, translate

# KEYS: 1 schedules hash [, 2 timers index, 3 the schedule's timers hash (one server only)]
# ARGV: name, expected ('' = absent), new ('' = delete), due ms ('' = arm nothing), timer id,
#       timer member, timer payload. A repeat (the record already is the new one) answers 1.
SWAP = """
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then
  if cur == ARGV[3] then return 1 end
  return 0
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
if ARGV[4] ~= '' and #KEYS == 3 then
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[7])
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[6])
end
return 1
"""


# Arming on a Redis Cluster, in the schedule's timer bucket. KEYS: 1 bucket zset, 2 bucket
# payload hash. ARGV: member, due ms, payload. NX: a claimed (held) timer keeps its hold.
ARM_BUCKET = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
return 1
"""


class ScheduleStore:
    """The schedule calls of `runner.store.Store` for `RedisStore` and `RedisClusterStore`."""

    client: Any
    _prefix: str
    _ix_root: str
    _GLOBAL: bool
    _swap: Any = None
    _arm_bucket: Any = None

    def _timer(self, name: str, due_ms: int) -> tuple[str, str, str, bytes]:
        """(the pseudo run, timer id, index member, payload) of a schedule's firing."""
        run, tid = keys.schedule_timer_run(name), str(due_ms)
        return run, tid, keys.timer_member(run, tid), pack([due_ms, b""])

    def get_schedule(self, name: str) -> bytes | None:
        try:
            raw = self.client.hget(keys.schedules_index(self._ix_root), name)
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return None if raw is None else bytes(raw)

    def list_schedules(self) -> dict[str, bytes]:
        try:
            raw = self.client.hgetall(keys.schedules_index(self._ix_root))
        except REDIS_ERRORS as e:
            raise translate(e) from e
        return {(k.decode() if isinstance(k, bytes) else str(k)): bytes(v) for k, v in raw.items()}

    def swap_schedule(self, name: str, expected: bytes | None, new: bytes | None, arm_ms: int | None) -> bool:
        client = self.client
        if self._swap is None:
            self._swap = client.register_script(SWAP)
        script_keys = [keys.schedules_index(self._ix_root)]
        args: list[Any] = [name, expected or b"", new or b"", "", "", "", b""]
        if arm_ms is not None:
            run, tid, member, payload = self._timer(name, arm_ms)
            args[3:] = [arm_ms, tid, member, payload]
            if self._GLOBAL:
                script_keys += [keys.timers_index(self._prefix), keys.run_key(self._prefix, run, keys.TIMERS)]
        try:
            done = bool(self._swap(keys=script_keys, args=args, client=client))
        except REDIS_ERRORS as e:
            raise translate(e) from e
        if done and arm_ms is not None and not self._GLOBAL:
            self.arm_schedule(name, arm_ms)
        return done

    def arm_schedule(self, name: str, due_ms: int) -> None:
        run, tid, member, payload = self._timer(name, due_ms)
        try:
            if not self._GLOBAL:
                if self._arm_bucket is None:
                    self._arm_bucket = self.client.register_script(ARM_BUCKET)
                bucket = keys.timer_bucket_keys(self._prefix, keys.timer_bucket(run))
                self._arm_bucket(keys=list(bucket), args=[member, due_ms, payload], client=self.client)
                return
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(keys.run_key(self._prefix, run, keys.TIMERS), tid, payload)
            pipe.zadd(keys.timers_index(self._prefix), {member: due_ms}, nx=True)
            pipe.execute()
        except REDIS_ERRORS as e:
            raise translate(e) from e
