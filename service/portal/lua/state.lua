-- KEYS: blocked-until, rate. ARGV: ceiling, climb. Returns "<effective rate> <hold-off left>".
local now = now_s()
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
local rate = effective(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
return tostring(rate) .. ' ' .. tostring(math.max(0, blocked - now))
