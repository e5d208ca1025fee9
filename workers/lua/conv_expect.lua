-- KEYS: conversation hash, this job's hash, scheduled registry, the timeout job's hash.
-- ARGV: execution id, ledger field to record in, step, data (JSON), timeout (s),
--       conversation TTL (s), timeout job id, its data, its description, stamp, the
--       conversation's tail key, handler.
-- Makes ``step`` the pending step, in a new generation; drops the previous step's timeout
-- if it has not fired yet (one that has is in the chain and will find the generation
-- moved on); schedules this one's: a job that joins the conversation's chain only when it
-- fires ('wh:chain', promote.lua) and carries the generation ('wh:gen'). Records the
-- generation in this job's ledger. Returns it, or -1 if this execution no longer holds
-- its job (nothing written). Prepended: service/chain.lua, common.lua, fence.lua.
local conv, job, scheduled, timer = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if not fenced(job, ARGV[1]) then return -1 end
local now = clock()
local old = redis.call('HGET', conv, 'timer')
if old and redis.call('ZREM', scheduled, old) == 1 then
  redis.call('DEL', 'rq:job:' .. old)
end
local gen = redis.call('HINCRBY', conv, 'gen', 1)
local deadline = now + tonumber(ARGV[5])
redis.call('HSET', conv, 'step', ARGV[3], 'data', ARGV[4], 'deadline', deadline,
           'timer', ARGV[7], 'handler', ARGV[12])
redis.call('EXPIRE', conv, math.max(tonumber(ARGV[6]), math.ceil(tonumber(ARGV[5])) + 86400))
local f = redis.call('HMGET', job, 'origin', 'timeout', 'result_ttl', 'failure_ttl', 'wh:epoch')
redis.call('HSET', timer, unpack(chain_job_fields(ARGV[10], ARGV[8], ARGV[9], f[1],
                                                  f[2] or '180', f[3] or '500',
                                                  f[4] or '31536000', f[5])))
redis.call('HSET', timer, 'status', 'scheduled', 'wh:chain', ARGV[11], 'wh:gen', gen)
redis.call('ZADD', scheduled, deadline, ARGV[7])
redis.call('HSET', job, ARGV[2], '{"state":"done","at":' .. now .. ',"result":{"gen":' .. gen .. '}}')
return gen
