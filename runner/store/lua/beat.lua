-- A worker's heartbeat for one attempt: renew its lease if the attempt still holds it, store
-- its progress and announce it, and answer the run's status (cancelled, or gone: nil).
-- KEYS: 1 leases, 2 meta.
-- ARGV: task, attempt, until ms (0 = no lease wanted), progress field, packed progress or "",
--       notify channel, publish command (PUBLISH, or SPUBLISH on a cluster). Returns {1|0 leased, run status or false}.
-- A lease's value is "<attempt>:<until ms>" (see runner/store/keys.py, leases).
local leased = 0
if tonumber(ARGV[3]) > 0 then
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  if cur then
    local a = string.match(cur, '^(%d+):')
    if a == ARGV[2] then
      redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
      leased = 1
    end
  end
end
local status = redis.call('HGET', KEYS[2], 'status')
if ARGV[5] ~= '' and status then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  redis.call(ARGV[7], ARGV[6], 'progress')
end
return {leased, status}
