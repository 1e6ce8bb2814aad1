-- Bring one run's entries in the global indexes up to date (Redis Cluster only; on one server
-- the commit keeps them itself). Run after each commit that changed the run's status, and
-- again whenever that commit's event comes back (runner/store/redis_cluster.py), so it must be
-- idempotent and must never let an older status overwrite a newer one: the run's status
-- changes are numbered by the commit (meta "ix"), and KEYS[1] remembers the number indexed.
-- All index keys share one hash tag, so this is one atomic script on one node.
-- KEYS: 1 index numbers (hash run -> number), 2 runs index, then the status indexes of every
--       run status (in ARGV's order), then, when the run has a flow, its flow index and its
--       flow-and-status indexes of every run status (same order).
-- ARGV: run id, status change number, status, created ms, n statuses, status names...
-- Returns 1 if the indexes changed, 0 if they already held this change or a later one.
local run, seq, status, score = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local cur = redis.call('HGET', KEYS[1], run)
if cur and tonumber(cur) >= seq then return 0 end
redis.call('HSET', KEYS[1], run, seq)
redis.call('ZADD', KEYS[2], score, run)
local n = tonumber(ARGV[5])
local with_flow = #KEYS > 2 + n
if with_flow then redis.call('ZADD', KEYS[3 + n], score, run) end
for s = 1, n do
  local mine = ARGV[5 + s] == status
  if mine then redis.call('ZADD', KEYS[2 + s], score, run) else redis.call('ZREM', KEYS[2 + s], run) end
  if with_flow then
    if mine then redis.call('ZADD', KEYS[3 + n + s], score, run) else redis.call('ZREM', KEYS[3 + n + s], run) end
  end
end
return 1
