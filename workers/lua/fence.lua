-- The fence (README "The job lifecycle", workers/lifecycle.py): every write an execution
-- makes for its job (ledger, store, conversation step, ending, release of the next event,
-- lease renewal) first checks, in the same script, that the execution still holds the job
-- (wh:holder) *and* that the job is started. Holding alone is not enough: RQ's own paths
-- (its registry cleanup, `rq requeue`, rq-dashboard's Requeue) move a job back to queued
-- without touching our holder field. Prepended to every script, after common.lua.
local function fenced(job_key, exec)
  local f = redis.call('HMGET', job_key, 'wh:holder', 'status')
  return f[1] == exec and f[2] == 'started'
end
