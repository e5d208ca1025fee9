-- The quarantine (README "The job lifecycle", workers/lifecycle.py). A worker's death
-- re-drives every job it had in flight, and only one of them may have killed it: each is
-- refunded its attempt and marked a suspect ('wh:suspect'). A queue runs one suspect at a
-- time, in its slot (service/keys.py `quarantine`: the execution's "<job id>:<execution id>"),
-- beside any number of other jobs; only a death in the slot counts as an attempt. A suspect
-- popped while the slot is held waits in the line (`quarantine_line`: job ids, in order),
-- deferred in RQ's registry, until the slot is released. Prepended after the prelude (the
-- fence) by start.lua, finish.lua and redrive.lua.

-- The member holding the slot, or false when none does: empty, or its execution no longer
-- holds its job (it ended or was moved on without us, e.g. by RQ's cleanup or a deletion).
local function slot_holder(slot)
  local member = redis.call('GET', slot)
  if not member then return false end
  local id, exec = split_member(member)
  if fenced('rq:job:' .. id, exec) then return member end
  return false
end

-- A suspect popped while the slot is held waits in the line: deferred (RQ's registry, which
-- RQ's tools list and never clean up on their own), behind the suspects already waiting.
local function await_slot(id, key, line, deferred_key, score)
  redis.call('HSET', key, 'status', 'deferred')
  redis.call('ZADD', deferred_key, score, id)
  redis.call('RPUSH', line, id)
end

-- Empty the slot and send the first suspect still waiting in the line to the front of its
-- queue (one that was deleted or moved on meanwhile is skipped). Returns its id, or false.
local function release_slot(slot, line, queue_key, deferred_key, stamp)
  redis.call('DEL', slot)
  while true do
    local id = redis.call('LPOP', line)
    if not id then return false end
    local key = 'rq:job:' .. id
    if redis.call('HGET', key, 'status') == 'deferred'
        and redis.call('ZREM', deferred_key, id) == 1 then
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', stamp)
      redis.call('LPUSH', queue_key, id)
      return id
    end
  end
end
