-- KEYS: burst hash, this job's hash, scheduled registry, a new flush job's hash.
-- ARGV: execution id, ledger field to record in, message id, message (JSON), quiet (s),
--       max wait (s), max messages, TTL (s), new flush job id, its data, its description,
--       stamp, the conversation's tail key.
-- Adds the message to the burst once (by message id) and (re-)arms the burst's flush: a
-- scheduled job that joins the conversation's chain when it fires ('wh:chain',
-- promote.lua), due `quiet` s after this message but at most `max wait` s after the
-- burst's first, at once when it holds `max messages`. A flush that already fired is in
-- the chain behind this job and takes this message too. Returns the burst's size, 0 if
-- the message was in it already, -1 if this execution no longer holds its job (nothing
-- written). Prepended: service/chain.lua, common.lua, fence.lua.
local burst, job, scheduled, flush = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if not fenced(job, ARGV[1]) then return -1 end
local now = clock()
local done = '{"state":"done","at":' .. now .. ',"result":null}'
if redis.call('HEXISTS', burst, 'id:' .. ARGV[3]) == 1 then
  redis.call('HSET', job, ARGV[2], done)
  return 0
end
local n = redis.call('HINCRBY', burst, 'n', 1)
redis.call('HSET', burst, 'm:' .. n, ARGV[4], 'id:' .. ARGV[3], n)
local id = redis.call('HGET', burst, 'job')
local first = now
if id then
  -- A flush that can no longer come (failed, e.g. refused by an older worker; or gone)
  -- is replaced, so the burst is not stranded; it keeps its messages.
  local status = redis.call('HGET', 'rq:job:' .. id, 'status')
  if status == 'scheduled' or status == 'deferred' or status == 'queued'
      or status == 'started' then
    first = tonumber(redis.call('HGET', burst, 'first'))
  else
    id = false
  end
end
if not id then
  id = ARGV[9]
  redis.call('HSET', burst, 'job', id, 'first', now)
  local f = redis.call('HMGET', job, 'origin', 'timeout', 'result_ttl', 'failure_ttl', 'wh:epoch')
  redis.call('HSET', flush, unpack(chain_job_fields(ARGV[12], ARGV[10], ARGV[11], f[1],
                                                    f[2] or '180', f[3] or '500',
                                                    f[4] or '31536000', f[5])))
  redis.call('HSET', flush, 'status', 'scheduled', 'wh:chain', ARGV[13])
end
local due = math.min(now + tonumber(ARGV[5]), first + tonumber(ARGV[6]))
if n >= tonumber(ARGV[7]) then due = now end
if id == ARGV[9] or redis.call('ZSCORE', scheduled, id) then
  redis.call('ZADD', scheduled, due, id)
end
redis.call('HSET', burst, 'due', due)
redis.call('EXPIRE', burst, ARGV[8])
redis.call('HSET', job, ARGV[2], done)
return n
