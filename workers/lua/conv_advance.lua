-- KEYS: conversation hash, this job's hash ('' for none: a handover), scheduled registry.
-- ARGV: execution id, how (answer | timeout | cancel), expected generation ('' for any;
--       a timeout reads the one it carries, 'wh:gen'), ledger field to record in ('' for
--       none), conversation TTL (s).
-- Check-and-advance: if a step is pending in the expected generation, end it (the
-- generation moves on, so whichever of answer, timeout and cancel comes second finds
-- nothing), drop its timeout if it has not fired, and record what it was in this job's
-- ledger. Returns {1, record}, {0} (nothing pending in that generation) or {-1} (this
-- execution no longer holds its job: nothing written). Prepended: common.lua, fence.lua.
local conv, job, scheduled = KEYS[1], KEYS[2], KEYS[3]
local how, expected, record = ARGV[2], ARGV[3], ARGV[4]
if job ~= '' and not fenced(job, ARGV[1]) then return {-1} end
if how == 'timeout' then expected = redis.call('HGET', job, 'wh:gen') or 'none' end
local now = clock()
local f = redis.call('HMGET', conv, 'gen', 'step', 'data', 'timer')
if not f[2] or (expected ~= '' and f[1] ~= expected) then
  if record ~= '' and how == 'cancel' then
    redis.call('HSET', job, record, '{"state":"done","at":' .. now .. ',"result":null}')
  end
  return {0}
end
redis.call('HINCRBY', conv, 'gen', 1)
redis.call('HDEL', conv, 'step', 'data', 'deadline', 'timer', 'handler')
if how ~= 'timeout' and f[4] and redis.call('ZREM', scheduled, f[4]) == 1 then
  redis.call('DEL', 'rq:job:' .. f[4])
end
local rec = cjson.encode({state = 'done', at = now, result = {
  step = f[2], data = f[3], gen = tonumber(f[1]), how = how}})
if record ~= '' then redis.call('HSET', job, record, rec) end
redis.call('EXPIRE', conv, ARGV[5])
return {1, rec}
