-- The effective rate: `rate` as of `ts` (set by the last cut), plus the climb since, capped.
-- KEYS[rate_key]; ARGV ceiling, climb (per second).
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function effective(key, ceiling, climb, now)
  local s = redis.call('HMGET', key, 'rate', 'ts')
  local rate = tonumber(s[1])
  if not rate then return ceiling end
  return math.min(ceiling, rate + math.max(0, now - tonumber(s[2])) * climb)
end
