-- KEYS: deferred registry, queue list, the queue's repair counts (hash).
-- ARGV: ZSCAN cursor, how many to look at, stamp.
-- Operator actions never strand a chain: one step of an incremental sweep of the deferred
-- registry (every worker runs it, a step every few seconds, README "The job lifecycle").
-- A deferred job of a chain (failures allowed, as our conversations' jobs are) whose
-- predecessors are all gone (`rq empty`, rq-dashboard's Delete,
-- `Job.delete()`) or ended (finished, failed, canceled, stopped: e.g. rq-dashboard's Cancel,
-- which releases nothing) is released as its predecessor's ending would have released it;
-- an entry whose job is gone, or no longer deferred, is dropped. A suspect waiting for its
-- queue's quarantine slot (quarantine.lua) is deferred too, for the slot's release: left
-- alone. Counted in the repair hash
-- ('released', 'dropped'). Returns {next cursor, released job ids}.
local reply = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local released, dropped = {}, 0
local function ended(id)
  local status = redis.call('HGET', 'rq:job:' .. id, 'status')
  return (not status) or status == 'finished' or status == 'failed' or status == 'canceled'
    or status == 'stopped'
end
for i = 1, #reply[2], 2 do
  local id = reply[2][i]
  local key = 'rq:job:' .. id
  local f = redis.call('HMGET', key, 'status', 'dependency_id', 'enqueue_at_front',
                       'allow_dependency_failures', 'wh:suspect')
  if not f[1] or f[1] ~= 'deferred' then
    redis.call('ZREM', KEYS[1], id)
    dropped = dropped + 1
  elseif f[5] then -- waits in the quarantine line, not for a predecessor
  elseif f[4] == '1' or f[4] == 'true' then -- a conversation's chain (a strict RQ dependent
                                             -- of a failed job stays deferred, as in RQ)
    local deps = redis.call('SMEMBERS', 'rq:job::' .. id .. ':dependencies')
    if #deps == 0 and f[2] then deps = {f[2]} end
    local free = true
    for _, dep in ipairs(deps) do
      if not ended(dep) then free = false end
    end
    if free then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[3])
      if f[3] == '1' then
        redis.call('LPUSH', KEYS[2], id)
      else
        redis.call('RPUSH', KEYS[2], id)
      end
      released[#released + 1] = id
    end
  end
end
if #released > 0 then redis.call('HINCRBY', KEYS[3], 'released', #released) end
if dropped > 0 then redis.call('HINCRBY', KEYS[3], 'dropped', dropped) end
return {reply[1], released}
