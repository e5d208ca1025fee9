-- KEYS: failed registry, queue list, deferred registry.
-- ARGV: job id, stamp, tail TTL (s) when the tail has none, an empty exc_info (RQ's form:
--       RQ's requeue writes one).
-- `wabahooks failed requeue` (README "Failed jobs"): a failed job goes back into its
-- conversation's chain with a fresh set of attempts, in one step. Out of the failed
-- registry; its attempts reset (ours, 'wh:attempts', and RQ's 'number_of_retries'), its
-- suspect mark and its old dependency fields cleared (what it waited for has ended; its
-- failure released its dependents), its start and end times blanked (as RQ's requeue does)
-- and its hash kept until it ends again; then queued if its conversation has no unfinished
-- job, else deferred behind the conversation's latest, and it becomes the latest
-- (service/chain.lua, prepended: the job names its conversation's tail in 'wh:tail').
-- Returns {'queued'}, {'deferred', the job it waits for}, or {'refused', its status or
-- 'gone'} for a job that is not failed.
local id = ARGV[1]
local key = 'rq:job:' .. id
local status = redis.call('HGET', key, 'status')
if status ~= 'failed' then return {'refused', status or 'gone'} end
local t = redis.call('TIME')
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', key, 'number_of_retries', 'wh:suspect', 'dependency_id', 'dependency_ids',
           'allow_dependency_failures', 'enqueue_at_front')
redis.call('HSET', key, 'wh:attempts', 0, 'started_at', '', 'ended_at', '', 'exc_info', ARGV[4])
redis.call('DEL', 'rq:job::' .. id .. ':dependencies')
redis.call('PERSIST', key)
local tail = redis.call('HGET', key, 'wh:tail') or ''
local prev = chain_prev(tail)
if prev == id then prev = false end
local ttl = ARGV[3]
if tail ~= '' then
  ttl = redis.call('TTL', tail)
  if ttl <= 0 then ttl = ARGV[3] end
end
chain_link(prev, id, key, KEYS[2], KEYS[3], t[1], ARGV[2], tail, ttl)
if prev then return {'deferred', prev} end
return {'queued'}
