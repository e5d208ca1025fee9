-- KEYS: scheduled registry, queue list. ARGV: stamp.
-- Moves the due scheduled jobs onto the queue (RQ's scheduler's step); returns how many.
local t = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]), 'LIMIT', 0, 500)
local moved = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = 'rq:job:' .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[1])
      redis.call('RPUSH', KEYS[2], id)
      moved = moved + 1
    end
  end
end
return moved
