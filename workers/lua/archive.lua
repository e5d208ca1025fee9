-- The event archive (service/archive.py, workers/archive.py): one entry per event, written
-- with the ending of its job. spec: '' (archive off, or nothing to archive), else
-- "<entry key>\t<time index>\t<feed>\t<contact index or ''>\t<arrival (epoch)>\t<retention>
-- \t<job id>\t<entry>": the entry (zlib-compressed JSON, binary) is all the rest.
local function archive(spec, now)
  if spec == '' then return end
  local entry, time_key, feed, contact, score, retention, id, json = string.match(
    spec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  local ttl = tonumber(retention)
  local oldest = '(' .. string.format('%.3f', now - ttl)
  redis.call('SET', entry, json, 'EX', ttl)
  redis.call('ZADD', time_key, score, id)
  redis.call('ZREMRANGEBYSCORE', time_key, '-inf', oldest)
  redis.call('EXPIRE', time_key, ttl)
  if contact ~= '' then
    redis.call('ZADD', contact, score, id)
    redis.call('ZREMRANGEBYSCORE', contact, '-inf', oldest)
    redis.call('EXPIRE', contact, ttl)
  end
  redis.call('XADD', feed, 'MAXLEN', '~', 1000, '*', 'id', id)
  redis.call('EXPIRE', feed, ttl)
end
