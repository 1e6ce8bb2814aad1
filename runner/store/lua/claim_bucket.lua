-- Claim due timers of one timer bucket (Redis Cluster only): move each one's score ``hold`` ms
-- ahead so other engines leave it alone while this one publishes it. A bucket is a zset of
-- timer members by due time and a hash of their payloads, in one slot; the script never reads
-- a run's keys (another slot): a timer its run cancelled but that was still in the bucket fires
-- and the engine's decision ignores it (the task moved on), as for any late timer.
-- KEYS: 1 bucket zset, 2 bucket payload hash. ARGV: now ms, limit, hold ms.
-- Returns {next due or "", member1, payload1, member2, payload2, ...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {''}
local later = tonumber(ARGV[1]) + tonumber(ARGV[3])
for _, m in ipairs(due) do
  local raw = redis.call('HGET', KEYS[2], m)
  if raw then
    redis.call('ZADD', KEYS[1], later, m)
    out[#out + 1] = m
    out[#out + 1] = raw
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[1] = first[2] end
return out
