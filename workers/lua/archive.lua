-- The event archive (service/archive.py, workers/archive.py): one entry per event, written
-- with the ending of its job. spec: '' (archive off, or nothing to archive), else
-- "<entry key>\t<time index>\t<feed>\t<contact index or ''>\t<arrival (epoch)>\t<retention>
-- \t<job id>\t<entry>": the entry (zlib-compressed JSON, binary) is all the rest.
-- Retention: events that arrived longer ago than it leave the time index with their entries,
-- at most TRIM per write (a write adds one, so a backlog after lowering it drains quickly).
local ARCHIVE_TRIM = 100
local function archive(spec, now)
  if spec == '' then return end
  local entry, time_key, feed, contact, score, retention, id, json = string.match(
    spec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  local ttl = tonumber(retention)
  -- An event that arrived longer ago than the retention is past it already: an entry the
  -- indexes trim at once could be found by nobody, not even `forget`.
  if tonumber(score) < now - ttl then return end
  local oldest = '(' .. string.format('%.3f', now - ttl)
  local entry_prefix = string.sub(entry, 1, #entry - #id)
  local expired = redis.call('ZRANGEBYSCORE', time_key, '-inf', oldest, 'LIMIT', 0, ARCHIVE_TRIM)
  for _, old in ipairs(expired) do
    redis.call('DEL', entry_prefix .. old)
  end
  if #expired > 0 then redis.call('ZREM', time_key, unpack(expired)) end
  redis.call('SET', entry, json, 'EX', ttl)
  redis.call('ZADD', time_key, score, id)
  redis.call('EXPIRE', time_key, ttl)
  if contact ~= '' then
    redis.call('ZADD', contact, score, id)
    redis.call('ZREMRANGEBYSCORE', contact, '-inf', oldest)
    redis.call('EXPIRE', contact, ttl)
  end
  redis.call('XADD', feed, 'MAXLEN', '~', 1000, '*', 'id', id)
  redis.call('EXPIRE', feed, ttl)
end
