-- KEYS: queue list, started registry, rq:suspended.
-- ARGV: worker name, stamp, lease + margin (s), execution TTL (s), retries_left, then one
--       new execution id per job wanted.
-- Returns {job id, execution id, attempt, {flat job hash as it was}, now} per started job.
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local wanted = #ARGV - 5
local ids = redis.call('LPOP', KEYS[1], wanted)
if not ids then return {} end
local now = clock()
local worker, stamp = ARGV[1], ARGV[2]
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i, id in ipairs(ids) do
  local key = 'rq:job:' .. id
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local exec = ARGV[5 + i]
    local attempt, retries = 1, false
    for j = 1, #flat, 2 do
      if flat[j] == 'wh:attempts' then attempt = tonumber(flat[j + 1]) + 1 end
      if flat[j] == 'retries_left' then retries = true end
    end
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
    out[#out + 1] = {id, exec, attempt, flat, tostring(now)}
  end
end
return out
