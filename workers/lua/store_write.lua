-- KEYS: the conversation's store hash, the writing execution's job hash.
-- ARGV: execution id, the store's TTL (s), then 'set' field value | 'del' field.
-- ``ctx.store``'s writes, fenced like the ledger's: a superseded execution cannot
-- overwrite what the job's current execution wrote. Returns 1, or 0 if the fence refuses
-- (nothing written). Prepended: common.lua, fence.lua.
if not fenced(KEYS[2], ARGV[1]) then return 0 end
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[4])
end
return 1
