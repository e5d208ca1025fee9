-- Shared by the scripts below (prepended to each): RQ's release of dependents, and
-- the steps that several scripts take.
local function release(id, failed, stamp)
  local dependents_key = 'rq:job:' .. id .. ':dependents'
  local dependents = redis.call('SMEMBERS', dependents_key)
  if #dependents == 0 then return 0 end
  for _, dep in ipairs(dependents) do
    local dkey = 'rq:job:' .. dep
    local f = redis.call('HMGET', dkey, 'status', 'dependency_ids', 'allow_dependency_failures',
                         'origin', 'enqueue_at_front')
    local allowed = (not failed) or f[3] == '1' or f[3] == 'true'
    if f[1] == 'deferred' and allowed and f[4] then
      local met = true
      if f[2] ~= '["' .. id .. '"]' then
        for _, other in ipairs(redis.call('SMEMBERS', 'rq:job::' .. dep .. ':dependencies')) do
          if other ~= id then
            local st = redis.call('HGET', 'rq:job:' .. other, 'status')
            if not (st == 'finished' or ((f[3] == '1' or f[3] == 'true') and st == 'failed')) then
              met = false
            end
          end
        end
      end
      if met then
        redis.call('ZREM', 'rq:deferred:' .. f[4], dep)
        redis.call('HSET', dkey, 'status', 'queued', 'enqueued_at', stamp)
        if f[5] == '1' then
          redis.call('LPUSH', 'rq:queue:' .. f[4], dep)
        else
          redis.call('RPUSH', 'rq:queue:' .. f[4], dep)
        end
      end
    end
  end
  redis.call('DEL', dependents_key)
  return #dependents
end

-- Redis' clock, in seconds with a fraction (every worker agrees on it).
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- "<job id>:<execution id>", a started-registry member (RQ's composite key).
local function split_member(member)
  local sep = string.find(member, ':', 1, true)
  return string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
end

local function drop_execution(id, exec, wip)
  redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
  redis.call('ZREM', wip, id .. ':' .. exec)
end

-- Failed for good: no execution holds it any more (a requeue starts a new one).
local function fail(key, id, exec, wip, failed_key, stamp, now, worker, started, exc, ttl)
  redis.call('HSET', key, 'status', 'failed', 'ended_at', stamp, 'last_heartbeat', stamp)
  redis.call('HDEL', key, 'wh:holder')
  redis.call('ZADD', failed_key, math.floor(now) + ttl, id)  -- whole seconds, as RQ
  local results = 'rq:results:' .. id
  redis.call('XADD', results, 'MAXLEN', '~', 10, '*', 'type', 2, 'worker_name', worker,
             'exc_string', exc, 'execution_id', exec, 'execution_started_at', started,
             'execution_ended_at', now)
  redis.call('EXPIRE', results, ttl)
  release(id, true, stamp)
  redis.call('EXPIRE', key, ttl)
  redis.call('EXPIRE', 'rq:job::' .. id .. ':dependencies', ttl)
  drop_execution(id, exec, wip)
end

-- Back to the front of its queue (ahead of its conversation's later events, which still
-- wait for it), no longer held by any execution.
local function requeue_front(key, id, exec, wip, queue_key, stamp)
  redis.call('HSET', key, 'status', 'queued', 'enqueued_at', stamp)
  redis.call('HDEL', key, 'wh:holder')
  redis.call('LPUSH', queue_key, id)
  drop_execution(id, exec, wip)
end
