-- KEYS: started registry, queue list, failed registry, deferred registry, quarantine slot,
--       quarantine line.
-- ARGV: margin (s: RQ's margin less the send margin, workers/lease.py), most attempts,
--       stamp, worker name, failure TTL fallback (s), the error to record (RQ's
--       exc_string form).
-- Re-drives executions whose lease ended at least the send margin ago (score - margin <
-- now): back to the front of the queue (the conversation's next event still waits for
-- them), where the quarantine (quarantine.lua, prepended) decides who is to blame:
-- - an execution that ran outside the slot died with its worker beside the others it had in
--   flight, any of which may have killed it: its attempt is refunded and its job becomes a
--   suspect ('wh:suspect'), to run alone in the slot;
-- - the execution holding the slot died with it: its attempt counts, and it fails once its
--   attempts are spent (the job keeps its suspect mark meanwhile); the slot is released.
-- An execution the fence no longer lets write (its job ended, or was moved on by RQ's own
-- tools) only loses its registry entry. A slot whose holder is gone is released too, so that
-- no suspect waits for it for ever.
-- Returns {re-driven job ids, failed job ids, the suspects among the re-driven}.
local now = clock()
local margin, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local stamp, worker = ARGV[3], ARGV[4]
local redriven, failed, suspects = {}, {}, {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + margin, 'LIMIT', 0, 100)
for _, member in ipairs(expired) do
  local id, exec = split_member(member)
  local key = 'rq:job:' .. id
  local f = redis.call('HMGET', key, 'wh:attempts', 'failure_ttl')
  local started = redis.call('HGET', 'rq:execution:' .. id .. ':' .. exec, 'created_at') or ''
  if fenced(key, exec) then
    local attempts = tonumber(f[1] or '1') or 1
    if redis.call('GET', KEYS[5]) ~= member then
      redis.call('HINCRBY', key, 'wh:attempts', -1)
      redis.call('HSET', key, 'wh:suspect', '1')
      requeue_front(key, id, exec, KEYS[1], KEYS[2], stamp)
      redriven[#redriven + 1] = id
      suspects[#suspects + 1] = id
    elseif attempts >= most then
      fail(key, id, exec, KEYS[1], KEYS[3], stamp, now, worker, started, ARGV[6],
           tonumber(f[2] or ARGV[5]) or tonumber(ARGV[5]))
      failed[#failed + 1] = id
    else
      requeue_front(key, id, exec, KEYS[1], KEYS[2], stamp)
      redriven[#redriven + 1] = id
    end
  else
    drop_execution(id, exec, KEYS[1])
  end
end
if not slot_holder(KEYS[5]) then
  release_slot(KEYS[5], KEYS[6], KEYS[2], KEYS[4], stamp)
end
return {redriven, failed, suspects}
