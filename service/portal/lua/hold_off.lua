-- KEYS: blocked-until, rate, bucket. ARGV: seconds, ceiling, climb, floor, calm.
-- Moves the pause forward (never back); halves the rate unless a cut is still calming down.
-- Returns the seconds every process must now hold back.
local now = now_s()
local seconds = tonumber(ARGV[1])
local until_ = now + seconds
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > blocked then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(seconds * 1000) + 1)
  blocked = until_
end
local ceiling, climb = tonumber(ARGV[2]), tonumber(ARGV[3])
local calm = tonumber(redis.call('HGET', KEYS[2], 'calm') or '0')
if now >= calm then
  local rate = math.max(tonumber(ARGV[4]), effective(KEYS[2], ceiling, climb, now) / 2)
  redis.call('HSET', KEYS[2], 'rate', tostring(rate), 'ts', tostring(blocked),
             'calm', tostring(blocked + tonumber(ARGV[5])))
  local recovered = blocked - now + (ceiling - rate) / climb
  redis.call('PEXPIRE', KEYS[2], math.ceil(recovered * 1000) + 1000)
  redis.call('HSET', KEYS[3], 'tokens', '0', 'ts', tostring(blocked))
  redis.call('PEXPIRE', KEYS[3], math.ceil((blocked - now + 1 / rate) * 1000) + 1000)
end
return tostring(blocked - now)
