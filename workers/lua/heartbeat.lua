-- KEYS: started registry. ARGV: lease + margin (s), execution TTL (s), then
-- "<job id>:<execution id>" per execution in flight. Renews each lease that is still ours
-- (ZADD XX); returns the members that are gone (re-driven or ended elsewhere).
local now = clock()
local lease, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, member) == 0 then
    lost[#lost + 1] = member
  else
    local id, exec = split_member(member)
    local ekey = 'rq:execution:' .. id .. ':' .. exec
    redis.call('HSET', ekey, 'last_heartbeat', now)
    redis.call('EXPIRE', ekey, ttl)
  end
end
return lost
