-- The commit: guards, then writes, history, outbox, deletes, timers and the run's indexes,
-- atomic and idempotent by event id (a repeat answers "dup" with the messages it caused).
-- Every guard is checked before the first write: a script failing half way is not rolled back.
--
-- Two modes. On one Redis server ("global" = '1') the script also keeps the global indexes
-- and the timers index (KEYS 12-16). On a Redis Cluster ('0') it touches only the run's own
-- keys (one slot): it counts the run's status changes in meta "ix" and returns that number,
-- and the store then brings the global structures up to date after the commit
-- (runner/store/redis_cluster.py), repairing them when the event comes again.
--
-- KEYS: 1 meta, 2 spec, 3 tasks, 4 data, 5 joins, 6 applied, 7 outbox, 8 history,
--       9 deliveries, 10 timers, 11 leases; with "global" also: 12 runs index,
--       13 old-status index, 14 new-status index, 15 timers index, 16 the run's flow index
-- ARGV: event id, run id, channel,
--       n guards,  then (key index, field, has expected "1"/"0", expected) each,
--       n writes,  then (key index, field, value) each,
--       n history, then entry each,
--       n outbox,  then (message id, packed message) each,
--       n deletes, then (key index, field) each,
--       n timers,  then (timer id, due ms, packed [due, event]) each,
--       n cancelled timers, then timer id each,
--       status change flag "0"/"1"/"2" (none / existing run / new run), created ms,
--       expire seconds (0 = keep, -1 = persist: a finished run is active again),
--       flow (new runs), key prefix, old status, new status, global "1"/"0",
--       publish command (PUBLISH, or SPUBLISH on a cluster)
-- Returns {"ok"} (global) or {"ok", status changes so far or ""} | {"conflict", guard number}
--       | {"dup", id1, msg1, id2, msg2, ...}
-- A repeat rewrites its "applied" entry unchanged: a write, so that a WAIT sent after it
-- (runner/store/redis.py) also waits for the replicas to hold the first commit of the event.
-- Key names built here (timer_member, flow_status_index) come from runner/store/keys.py:
-- the loader (runner/store/lua/__init__.py) defines them above this script.
local eid = ARGV[1]
local done = redis.call('HGET', KEYS[6], eid)
if done then
  redis.call('HSET', KEYS[6], eid, done)
  local out = {'dup'}
  for id in string.gmatch(done, '[^\n]+') do
    local m = redis.call('HGET', KEYS[7], id)
    if m then out[#out + 1] = id; out[#out + 1] = m end
  end
  return out
end
local i = 4
local n = tonumber(ARGV[i]); i = i + 1
for g = 1, n do
  local cur = redis.call('HGET', KEYS[tonumber(ARGV[i])], ARGV[i + 1])
  if ARGV[i + 2] == '1' then
    if cur ~= ARGV[i + 3] then return {'conflict', tostring(g - 1)} end
  elseif cur then
    return {'conflict', tostring(g - 1)}
  end
  i = i + 4
end
n = tonumber(ARGV[i]); i = i + 1
for w = 1, n do
  redis.call('HSET', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for h = 1, n do
  redis.call('RPUSH', KEYS[8], ARGV[i])
  i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
local ids = {}
for o = 1, n do
  redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
  i = i + 2
end
redis.call('HSET', KEYS[6], eid, table.concat(ids, '\n'))
n = tonumber(ARGV[i]); i = i + 1
for d = 1, n do
  redis.call('HDEL', KEYS[tonumber(ARGV[i])], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
local global = ARGV[#ARGV - 1] == '1'
for t = 1, n do
  redis.call('HSET', KEYS[10], ARGV[i], ARGV[i + 2])
  if global then redis.call('ZADD', KEYS[15], ARGV[i + 1], timer_member(ARGV[2], ARGV[i])) end
  i = i + 3
end
n = tonumber(ARGV[i]); i = i + 1
for t = 1, n do
  redis.call('HDEL', KEYS[10], ARGV[i])
  if global then redis.call('ZREM', KEYS[15], timer_member(ARGV[2], ARGV[i])) end
  i = i + 1
end
local change, score = ARGV[i], ARGV[i + 1]
local seq = ''
if change ~= '0' and not global then
  seq = redis.call('HINCRBY', KEYS[1], 'ix', 1)
elseif change ~= '0' then
  if change == '2' then
    redis.call('ZADD', KEYS[12], score, ARGV[2])
    if ARGV[i + 3] ~= '' then redis.call('ZADD', KEYS[16], score, ARGV[2]) end
  else
    redis.call('ZREM', KEYS[13], ARGV[2])
  end
  redis.call('ZADD', KEYS[14], score, ARGV[2])
  local fl = redis.call('HGET', KEYS[1], 'flow')
  if fl then  -- the run by flow and status, for filters on both (keys outside the run's tag)
    local prefix = ARGV[i + 4]
    if change ~= '2' then redis.call('ZREM', flow_status_index(prefix, fl, ARGV[i + 5]), ARGV[2]) end
    redis.call('ZADD', flow_status_index(prefix, fl, ARGV[i + 6]), score, ARGV[2])
  end
end
local expire = tonumber(ARGV[i + 2])
if expire > 0 then
  for k = 1, 11 do redis.call('EXPIRE', KEYS[k], expire) end
elseif expire < 0 then
  for k = 1, 11 do redis.call('PERSIST', KEYS[k]) end
end
-- '!' marks a change of the run's status (waiters for the end need not read the others)
redis.call(ARGV[#ARGV], ARGV[3], change ~= '0' and ('!' .. eid) or eid)
if global then return {'ok'} end
return {'ok', tostring(seq)}
