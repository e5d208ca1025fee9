-- KEYS: started registry. ARGV: lease + margin (s), execution TTL (s), then
-- "<job id>:<execution id>" per execution in flight. Renews each lease that is still ours
-- (the fence lets the execution write); returns the members that are not (re-driven, ended
-- elsewhere, or moved on by RQ's own tools), and drops their registry entries. A registry
-- entry missing while the fence still holds is written again: RQ's registry cleanup ends
-- with a ZREMRANGEBYSCORE up to its own clock, which also takes the entries of jobs started
-- after it read the registry, without re-queueing them (on a clock far ahead, it reaches
-- live leases); lost, such a job would stay started with no lease for a re-drive to find.
local now = clock()
local lease, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  local id, exec = split_member(member)
  if fenced('rq:job:' .. id, exec) then
    redis.call('ZADD', KEYS[1], now + lease, member)
    local ekey = 'rq:execution:' .. id .. ':' .. exec
    redis.call('HSET', ekey, 'last_heartbeat', now)
    redis.call('EXPIRE', ekey, ttl)
  else
    drop_execution(id, exec, KEYS[1])
    lost[#lost + 1] = member
  end
end
return lost
