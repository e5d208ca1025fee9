-- KEYS: the worker's hash (rq:worker:<name>), rq:workers, the queue's workers set.
-- ARGV: the death's timestamp (RQ's format), the hash's remaining lifetime (s).
-- RQ's register_death, in one step that runs even when Redis is over maxmemory (allow-oom): a
-- worker stopping while a full Redis drains must not stay listed in rq:workers. It frees
-- more than it writes (two set members against one field).
redis.call('SREM', KEYS[2], KEYS[1])
redis.call('SREM', KEYS[3], KEYS[1])
redis.call('HSET', KEYS[1], 'death', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
