-- KEYS: the worker's hash (rq:worker:<name>), rq:workers, the queue's workers set, rq:queues.
-- ARGV: the hash's lifetime (s), the queue's key, then the hash's fields and values.
-- RQ's register_birth, in one step that runs even when Redis is over maxmemory (allow-oom):
-- a few hundred bytes, without which the workers of a full Redis could not start to drain it.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('SADD', KEYS[3], KEYS[1])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
