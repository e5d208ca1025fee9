-- KEYS: bucket, blocked-until, rate[, contact bucket].
-- ARGV: ceiling, burst at the ceiling, tokens wanted, climb[, contact rate, contact burst].
-- Returns "<granted> <seconds to wait> <why: ok|held|rate|contact> <effective rate>".
local now = now_s()
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then return '0 ' .. tostring(blocked - now) .. ' held 0' end
local ceiling = tonumber(ARGV[1])
local rate = effective(KEYS[3], ceiling, tonumber(ARGV[4]), now)
local burst = math.max(1, tonumber(ARGV[2]) * rate / ceiling)
local ctokens = nil
if KEYS[4] then
  local crate, cburst = tonumber(ARGV[5]), tonumber(ARGV[6])
  local c = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
  local elapsed = math.max(0, now - (tonumber(c[2]) or now))
  ctokens = math.min(cburst, (tonumber(c[1]) or cburst) + elapsed * crate)
  if ctokens < 1 then
    return '0 ' .. tostring((1 - ctokens) / crate) .. ' contact ' .. tostring(rate)
  end
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait, granted, why = 0, 0, 'ok'
if tokens >= 1 then
  granted = math.min(tonumber(ARGV[3]), math.floor(tokens))
  tokens = tokens - granted
else
  wait, why = (1 - tokens) / rate, 'rate'
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if ctokens and granted > 0 then
  redis.call('HSET', KEYS[4], 'tokens', tostring(ctokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[6]) / tonumber(ARGV[5]) * 1000) + 1000)
end
return tostring(granted) .. ' ' .. tostring(wait) .. ' ' .. why .. ' ' .. tostring(rate)
