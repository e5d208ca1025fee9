-- KEYS: a list RQ's Queue.compact() left behind (rq:queue:_compact:<uuid>: rq-dashboard's
--       Compact, interrupted), the queue's repair counts (hash).
-- ARGV: the queue's name.
-- Compaction renames a queue to a temporary list, then moves its jobs back one by one; a
-- crash in between leaves the rest there, popped by no one. This queue's queued jobs in it
-- are put back on the queue (their conversations' order is kept by their chains), the
-- others left for their own queues' workers; the list goes once nothing of ours is in it.
-- Returns how many were adopted.
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local adopted = 0
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', 'rq:job:' .. id, 'origin', 'status')
  if f[1] == ARGV[1] then
    redis.call('LREM', KEYS[1], 0, id)
    if f[2] == 'queued' then
      redis.call('RPUSH', 'rq:queue:' .. ARGV[1], id)
      adopted = adopted + 1
    end
  end
end
if adopted > 0 then redis.call('HINCRBY', KEYS[2], 'adopted', adopted) end
return adopted
