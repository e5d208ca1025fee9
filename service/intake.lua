-- Claim an event's identity and write its RQ job (RQ 2.12 layout), atomically, into its
-- conversation's chain (service/chain.lua, prepended).
-- Every read and check comes before the first write: Lua does not roll back.
--
-- KEYS: claim, job hash, queue list, RQ's set of queues, conversation tail
--       ('' when the event has no conversation), deferred registry, Redis epoch hash
-- ARGV: job id, claim TTL, tail TTL, deferred score (epoch seconds),
--       created_at (also enqueued_at), data, description, origin, timeout,
--       result_ttl, failure_ttl
-- Returns {outcome, job id, predecessor job id or ''}; outcome is
-- 'accepted' or 'duplicate'.
local claim_key, job_key, queue_key, queues_key, tail_key, deferred_key, epoch_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job_id = ARGV[1]

local claimed_by = redis.call('GET', claim_key)
if claimed_by then
  if claimed_by == job_id then
    -- Our own earlier attempt at this very request (a client-side retry after
    -- a lost reply): it already wrote everything.
    return {'accepted', job_id, ''}
  end
  return {'duplicate', claimed_by, ''}
end

-- The conversation's previous job, if it is still unfinished (chain.lua).
local prev = chain_prev(tail_key)
local epoch = redis.call('HGET', epoch_key, 'n')

-- Writes.
redis.call('SET', claim_key, job_id, 'EX', ARGV[2])
redis.call('HSET', job_key, unpack(chain_job_fields(ARGV[5], ARGV[6], ARGV[7], ARGV[8],
                                                    ARGV[9], ARGV[10], ARGV[11], epoch)))
chain_link(prev, job_id, job_key, queue_key, deferred_key, ARGV[4], ARGV[5], tail_key, ARGV[3])
redis.call('SADD', queues_key, queue_key)
return {'accepted', job_id, prev or ''}
