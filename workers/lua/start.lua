-- KEYS: queue list, started registry, rq:suspended, deferred registry, quarantine slot,
--       quarantine line, finished registry, failed registry.
-- ARGV: worker name, stamp, lease + margin (s), execution TTL (s), retries_left, tail TTL
--       (s) when the tail has none, then one new execution id per job wanted.
-- Pops up to N jobs and starts each that may start (README "The job lifecycle"):
-- - a job that is not queued is not started (popped twice, or moved on by someone else:
--   its state's owner has it);
-- - a job queued while it is still in the finished or failed registry is not started: a stale
--   writer put it back after it ended (RQ's registry cleanup read it while it ran, and wrote
--   its abandonment once it had ended; RQ's own requeue of a failed job takes it out of the
--   failed registry first). Its ended status is restored;
-- - a job whose conversation has an unfinished job it does not come before goes back
--   into the chain instead (a job RQ's tools re-queued behind its conversation's back:
--   `rq requeue`, rq-dashboard's Requeue, RQ's registry cleanup): behind the
--   conversation's latest job ('wh:tail', written by chain_link) when nothing waits for it;
--   one that starts while that latest job has ended becomes the latest itself;
-- - a job whose conversation has another job running (its execution, in the tail's
--   '<tail>:running', still holds it) waits behind that one: the sweep released it early,
--   because an operator deleted or canceled the job between them;
-- - a suspect ('wh:suspect': re-driven from a dead worker) starts only into its queue's
--   empty quarantine slot, which it then holds; while another suspect holds it, it waits in
--   the line (quarantine.lua), and the jobs popped after it still start.
-- Prepended: service/chain.lua, common.lua, fence.lua, quarantine.lua.
-- Returns {started, refused, waiting}: started = {job id, execution id, attempt, {flat job
-- hash as it was}, now} per started job; refused = {job id, why} per job popped but not
-- started or waiting; waiting = the suspects sent to the line.
if redis.call('EXISTS', KEYS[3]) == 1 then return {{}, {}, {}} end
local wanted = #ARGV - 6
local ids = redis.call('LPOP', KEYS[1], wanted)
if not ids then return {{}, {}, {}} end
local now = clock()
local worker, stamp = ARGV[1], ARGV[2]
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, refused, waiting = {}, {}, {}
local used = 0

-- The unfinished job this one must still wait for, if any (false: none), by the
-- conversation's tail alone ('wh:tail'): the latest job, unless this job is it or something
-- waits for this job (it holds its place in the chain: a head released, a re-drive). The
-- predecessor it once waited for ('dependency_id') says nothing once RQ's tools re-queued
-- it: that job may be re-queued itself, behind the conversation's latest.
local function must_wait(id, key)
  local tail = redis.call('HGET', key, 'wh:tail')
  if tail then
    local prev = chain_prev(tail)
    if prev and prev ~= id and redis.call('EXISTS', 'rq:job:' .. id .. ':dependents') == 0 then
      return prev, tail
    end
  end
  return false, tail or ''
end

-- A job that starts while its conversation's latest job has ended (or is gone) is the
-- latest unfinished job now (RQ's tools re-queued it): the tail points at it, so the
-- conversation's next event waits for it, as does a job re-queued after it.
local function take_tail(id, tail, fallback_ttl)
  if tail == '' or redis.call('GET', tail) == id or chain_prev(tail) then return end
  local ttl = redis.call('TTL', tail)
  if ttl <= 0 then ttl = fallback_ttl end
  redis.call('SET', tail, id, 'EX', ttl)
end

-- The other job of this conversation that runs now, if any (false: none): the one whose
-- execution the conversation's running key names, as long as the fence lets it write.
local function running_other(id, tail)
  if tail == '' then return false end
  local member = redis.call('GET', tail .. ':running')
  if not member then return false end
  local other, exec = split_member(member)
  if other ~= id and fenced('rq:job:' .. other, exec) then return other end
  return false
end

for _, id in ipairs(ids) do
  local key = 'rq:job:' .. id
  local status = redis.call('HGET', key, 'status')
  if not status then
    refused[#refused + 1] = {id, 'gone'}
  elseif status ~= 'queued' then
    refused[#refused + 1] = {id, status}
  elseif redis.call('ZSCORE', KEYS[7], id) or redis.call('ZSCORE', KEYS[8], id) then
    local ended = redis.call('ZSCORE', KEYS[7], id) and 'finished' or 'failed'
    redis.call('HSET', key, 'status', ended)
    refused[#refused + 1] = {id, 'ended already (' .. ended .. ')'}
  else
    local prev, tail = must_wait(id, key)
    local other = (not prev) and running_other(id, tail)
    if prev then
      local tail_ttl = ARGV[6]
      if tail ~= '' then
        tail_ttl = redis.call('TTL', tail)
        if tail_ttl <= 0 then tail_ttl = ARGV[6] end
      end
      chain_link(prev, id, key, KEYS[1], KEYS[4], math.floor(now), stamp, tail, tail_ttl)
      refused[#refused + 1] = {id, 'rechained behind ' .. prev}
    elseif other then
      chain_link(other, id, key, KEYS[1], KEYS[4], math.floor(now), stamp, '', 0)
      refused[#refused + 1] = {id, 'waits for ' .. other .. ', running'}
    elseif redis.call('HEXISTS', key, 'wh:suspect') == 1 and slot_holder(KEYS[5]) then
      await_slot(id, key, KEYS[6], KEYS[4], math.floor(now))
      waiting[#waiting + 1] = id
    else
      used = used + 1
      take_tail(id, tail, ARGV[6])
      local flat = redis.call('HGETALL', key)
      local exec = ARGV[6 + used]
      local attempt, retries, suspect = 1, false, false
      for j = 1, #flat, 2 do
        if flat[j] == 'wh:attempts' then attempt = tonumber(flat[j + 1]) + 1 end
        if flat[j] == 'retries_left' then retries = true end
        if flat[j] == 'wh:suspect' then suspect = true end
      end
      if suspect then redis.call('SET', KEYS[5], id .. ':' .. exec) end
      local set = {'status', 'started', 'started_at', stamp, 'last_heartbeat', stamp,
                   'worker_name', worker, 'wh:holder', exec, 'wh:attempts', attempt}
      if not retries then
        set[#set + 1] = 'retries_left'
        set[#set + 1] = ARGV[5]
      end
      redis.call('HSET', key, unpack(set))
      local ekey = 'rq:execution:' .. id .. ':' .. exec
      redis.call('HSET', ekey, 'id', exec, 'created_at', now, 'last_heartbeat', now,
                 'worker_name', worker)
      redis.call('EXPIRE', ekey, ttl)
      redis.call('ZADD', KEYS[2], now + lease, id .. ':' .. exec)
      if tail ~= '' then
        local tail_ttl = redis.call('TTL', tail)
        if tail_ttl <= 0 then tail_ttl = ARGV[6] end
        redis.call('SET', tail .. ':running', id .. ':' .. exec, 'EX', tail_ttl)
      end
      out[#out + 1] = {id, exec, attempt, flat, tostring(now)}
    end
  end
end
return {out, refused, waiting}
