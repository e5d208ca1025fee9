-- KEYS: the job hash, then the sent set of each id recorded.
-- ARGV: execution id, a field to delete ('' for none), the sent sets' TTL, a field to write
--       an intent into ('' for none), then one message id per sent set, then field/value
--       pairs to set (the deferred records and this write's). One script: the ids and the
--       records they belong to go together. An intent is stamped with Redis' clock (every
--       worker agrees on it; a worker's own clock may be off): the history search that
--       settles a lost send starts from it.
-- Returns the intent's time (Redis' clock, a string; '' without one), or 0 if the fence
-- refuses this execution (nothing written). Prepended: common.lua, fence.lua.
if not fenced(KEYS[1], ARGV[1]) then return 0 end
if ARGV[2] ~= '' then redis.call('HDEL', KEYS[1], ARGV[2]) end
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[3 + i])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
local first = 4 + #KEYS
if #ARGV >= first then redis.call('HSET', KEYS[1], unpack(ARGV, first)) end
if ARGV[4] == '' then return '' end
local now = tostring(clock())
redis.call('HSET', KEYS[1], ARGV[4], '{"state":"intent","at":' .. now .. ',"result":null}')
return now
