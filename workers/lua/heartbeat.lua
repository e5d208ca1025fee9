-- KEYS: started registry. ARGV: lease + margin (s), execution TTL (s), then
-- "<job id>:<execution id>" per execution in flight. Renews each lease that is still ours
-- (the fence lets the execution write, and its registry entry is there: ZADD XX); returns
-- the members that are not (re-driven, ended elsewhere, or moved on by RQ's own tools),
-- and drops their registry entries.
local now = clock()
local lease, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  local id, exec = split_member(member)
  if fenced('rq:job:' .. id, exec)
      and redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, member) == 1 then
    local ekey = 'rq:execution:' .. id .. ':' .. exec
    redis.call('HSET', ekey, 'last_heartbeat', now)
    redis.call('EXPIRE', ekey, ttl)
  else
    drop_execution(id, exec, KEYS[1])
    lost[#lost + 1] = member
  end
end
return lost
