-- KEYS: the job hash, then the sent set of each id recorded.
-- ARGV: execution id, a field to delete ('' for none), the sent sets' TTL, then one message
--       id per sent set, then field/value pairs to set (the deferred records and this
--       write's). One script: the ids and the records they belong to go together.
-- Returns 1, or 0 if the fence refuses this execution (nothing written).
-- Prepended: common.lua, fence.lua.
if not fenced(KEYS[1], ARGV[1]) then return 0 end
if ARGV[2] ~= '' then redis.call('HDEL', KEYS[1], ARGV[2]) end
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[2 + i])
  redis.call('EXPIRE', KEYS[i], ARGV[3])
end
local first = 3 + #KEYS
if #ARGV >= first then redis.call('HSET', KEYS[1], unpack(ARGV, first)) end
return 1
