-- Add and forget timers in one timer bucket (Redis Cluster only; on one server the commit
-- keeps the timers index itself): after the commit that armed or cancelled them, and again
-- when that commit's event comes back (adding a timer already there changes nothing).
-- KEYS: 1 bucket zset, 2 bucket payload hash.
-- ARGV: n adds, then (member, due ms, payload) each; then members to forget.
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  i = i + 3
end
for j = i, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[j])
  redis.call('HDEL', KEYS[2], ARGV[j])
end
return n
