-- Claim due timers: move each one's score ``hold`` ms ahead so other engines leave it alone
-- while this one publishes it; a timer whose run forgot it (cancelled, expired) is dropped.
-- KEYS: 1 timers index. ARGV: now ms, limit, hold ms, key prefix.
-- Returns {next due or "", member1, event1, member2, event2, ...}
-- The timers index holds timer_member(run, timer id) (JOIN_SEP between them); the run's timers
-- hash is run_key(prefix, run, TIMERS). Both come from runner/store/keys.py: the loader
-- (runner/store/lua/__init__.py) defines them above this script.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {''}
local later = tonumber(ARGV[1]) + tonumber(ARGV[3])
for _, m in ipairs(due) do
  local sep, sep_end = string.find(m, JOIN_SEP, 1, true)
  local raw = nil
  if sep then
    raw = redis.call('HGET', run_key(ARGV[4], string.sub(m, 1, sep - 1), TIMERS),
                     string.sub(m, sep_end + 1))
  end
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
