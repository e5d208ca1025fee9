-- KEYS: scheduled registry, queue list, deferred registry.
-- ARGV: stamp, tail TTL (s) when the tail has none.
-- Moves the due scheduled jobs onto the queue (RQ's scheduler's step); returns how many,
-- and the milliseconds until the next scheduled job is due (-1: none), so that the worker
-- wakes for it (due times have fractions: a burst's flush is due `quiet` s after a message).
-- A job that carries 'wh:chain' (a conversation's flush or step timeout, firing) enters
-- its conversation's chain instead (service/chain.lua, prepended): behind the
-- conversation's unfinished latest job, ahead of its later events. Once: the field goes,
-- so a retry of it is promoted as any other (it already holds its place).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
local moved = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = 'rq:job:' .. id
    if redis.call('EXISTS', key) == 1 then
      local tail = redis.call('HGET', key, 'wh:chain')
      if tail then
        local prev = chain_prev(tail)
        if prev == id then prev = false end
        local ttl = redis.call('TTL', tail)
        if ttl <= 0 then ttl = ARGV[2] end
        redis.call('HDEL', key, 'wh:chain')
        chain_link(prev, id, key, KEYS[2], KEYS[3], t[1], ARGV[1], tail, ttl)
      else
        redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[1])
        redis.call('RPUSH', KEYS[2], id)
      end
      moved = moved + 1
    end
  end
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if next_due[2] then wait = math.max(0, math.ceil((tonumber(next_due[2]) - now) * 1000)) end
return {moved, wait}
