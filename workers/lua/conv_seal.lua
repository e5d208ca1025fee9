-- KEYS: burst hash, this flush job's hash. ARGV: execution id, this job's id, ledger field.
-- Takes the burst this flush job was armed for: its messages, in order, move into this
-- job's ledger (so a retry of the flush finds them there) and the burst goes (the
-- conversation's next message starts a new one). Returns the record (JSON), nil if the
-- burst is not this job's (nothing to flush), or -1 if this execution no longer holds its
-- job. Prepended: common.lua, fence.lua.
local burst, job = KEYS[1], KEYS[2]
if not fenced(job, ARGV[1]) then return -1 end
local rec = redis.call('HGET', job, ARGV[3])
if rec then return rec end
if redis.call('HGET', burst, 'job') ~= ARGV[2] then return false end
local n = tonumber(redis.call('HGET', burst, 'n'))
local parts = {}
for i = 1, n do
  local m = redis.call('HGET', burst, 'm:' .. i)
  if m then parts[#parts + 1] = m end
end
rec = '{"state":"done","at":' .. clock() .. ',"result":{"messages":[' ..
  table.concat(parts, ',') .. ']}}'
redis.call('HSET', job, ARGV[3], rec)
redis.call('DEL', burst)
return rec
