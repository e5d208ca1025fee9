"""The wabahooks RQ worker: one queue per process, JSON jobs, no fork per job, scheduler on.

:class:`WabaWorker` is RQ's ``SimpleWorker`` (jobs run in the worker process: a fork
per job measured 22 jobs/s here and loses every reused connection) with these
differences, each for a reason RQ's defaults do not cover:

- **One queue.** RQ moves a job atomically into the queue's intermediate list
  (``BLMOVE``) only when the worker listens to a single queue; with several it pops
  plainly, and a worker dying right after the pop loses the job. Several queues are
  refused (:class:`OneQueuePerProcess`).
- **JSON only.** The receiver writes jobs with RQ's ``JSONSerializer``; the payload
  is untrusted, so pickle is never used, whatever the caller passes.
- **No personal data in RQ's log lines.** ``log_job_description`` is off, and a
  failing job's arguments (the envelope: numbers, texts) are not attached to RQ's
  error record, where a log handler rendering ``extra`` would print them.
- **Warm shutdown without a window.** RQ stops an idle worker by raising from the
  signal handler, which can interrupt ``BLMOVE`` after the server moved a job into
  the intermediate list (the job then waits for cleanup and is failed). Here a
  stop request is only a flag, checked between jobs and between short blocking
  dequeues (:data:`DEQUEUE_SLICE` seconds): the current job always finishes.
- **The scheduler child follows its worker.** RQ runs the scheduler (delayed
  retries) in a forked child; after a SIGKILL of the worker that child would keep
  running, holding the queue's scheduler lock. Ours notices the new parent within
  a second and stops, releasing the lock.

After a SIGKILL, RQ's maintenance (run by any worker on the queue every
``maintenance_interval`` seconds) fails the abandoned job once its started-registry
entry expires (job timeout + 60 s), or, if it died between dequeue and start, a
minute after the intermediate-list cleanup first sees it; either way its
dependents are released.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Sequence
from typing import Any

from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.executions import Execution
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus

from workers.ledger import JOB_FIELD_PREFIX

__all__ = ["DEQUEUE_SLICE", "OneQueuePerProcess", "WabaJob", "WabaWorker"]

#: Seconds one blocking dequeue waits before the worker checks for a stop request.
DEQUEUE_SLICE = 1
#: At most one lone worker heartbeat per this many seconds (RQ sends several per job).
HEARTBEAT_EVERY = 5.0
#: At most one check for `rq suspend` per this many seconds (RQ checks before every job).
SUSPENSION_CHECK_EVERY = 1.0


# KEYS: queue, its intermediate list. RQ's dequeue (LMOVE) and job fetch (HGETALL).
_MOVE_AND_FETCH = """
local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not id then return false end
return {id, redis.call('HGETALL', 'rq:job:' .. id)}
"""


class OneQueuePerProcess(ValueError):
    """A worker was given several queues, or none."""


def _queue_count(queues: str | Queue | Sequence[str] | Sequence[Queue]) -> int:
    if isinstance(queues, str | Queue):
        return 1
    return len(queues)


class _Scheduler(RQScheduler):
    """RQ's scheduler, stopping by itself once the worker that forked it is gone."""

    _parent_pid = 0

    def start(self) -> Any:
        self._parent_pid = os.getpid()
        return super().start()  # type: ignore[no-untyped-call]  # rq's scheduler is unannotated

    def heartbeat(self) -> None:
        if self._parent_pid and os.getppid() != self._parent_pid:
            self.log.warning("Scheduler: its worker (PID %s) is gone; stopping", self._parent_pid)
            self.request_stop()  # type: ignore[no-untyped-call]  # rq's scheduler is unannotated
        super().heartbeat()  # type: ignore[no-untyped-call]  # rq's scheduler is unannotated


class WabaJob(Job):
    """RQ's job, keeping the ledger fields (``wh:…``) that RQ's fetch of the job hash
    already read, so the exactly-once ledger costs no round trip of its own."""

    ledger_fields: dict[str, str] | None = None

    def restore(self, raw_data: Any) -> Any:
        result = super().restore(raw_data)
        prefix = JOB_FIELD_PREFIX.encode()
        self.ledger_fields = {
            key.decode()[len(prefix) :]: value.decode()
            for key, value in raw_data.items()
            if key.startswith(prefix)
        }
        return result


class WabaWorker(SimpleWorker):
    """An RQ worker for one wabahooks queue. Start it with :meth:`run`.

    Takes RQ's ``SimpleWorker`` arguments; ``serializer`` is always
    ``JSONSerializer`` and ``log_job_description`` always off.
    """

    def __init__(
        self,
        queues: str | Queue | Sequence[str] | Sequence[Queue],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # RQ's own look-ups (Worker.find_by_key) build a worker only to describe it.
        if kwargs.get("prepare_for_work", True) and _queue_count(queues) != 1:
            raise OneQueuePerProcess(
                f"a wabahooks worker listens to exactly one queue, got {_queue_count(queues)}: "
                "start one worker process per queue"
            )
        kwargs["serializer"] = JSONSerializer
        kwargs["log_job_description"] = False
        kwargs["job_class"] = WabaJob
        self._beat_at = float("-inf")
        self._preparation: Any = None
        self._move_and_fetch: Any = None
        self._suspension_at = float("-inf")
        super().__init__(queues, *args, **kwargs)
        self._move_and_fetch = self.connection.register_script(_MOVE_AND_FETCH)

    def run(self, *, burst: bool = False) -> bool:
        """Work the queue with the scheduler on until stopped (or empty, if ``burst``).

        Return whether any job ran. The process's SIGINT and SIGTERM handlers are
        restored afterwards, so a worker run inside another program leaves them as
        it found them.
        """
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            # logging_level=None: keep the process's logging configuration.
            return bool(self.work(burst=burst, logging_level=None, with_scheduler=True))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def stop_requested(self) -> bool:
        """Whether SIGINT/SIGTERM asked this worker to stop."""
        return self._stop_requested

    @property
    def scheduler_pid(self) -> int | None:
        """The PID of this worker's scheduler child while it runs, else None."""
        process = self.scheduler._process if self.scheduler else None
        if process is None or process.exitcode is not None:
            return None
        pid: int | None = process.pid
        return pid

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        # RQ's _start_scheduler, with our scheduler class, named after its worker.
        scheduler = _Scheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
            name=self.name,
        )
        self.scheduler = scheduler
        scheduler.acquire_locks()  # type: ignore[no-untyped-call]  # rq's scheduler is unannotated
        if not scheduler.acquired_locks:
            return  # another worker's scheduler serves this queue
        if burst:
            try:
                scheduler.register_birth()
                scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]  # rq's scheduler is unannotated
            finally:
                scheduler.release_locks()  # type: ignore[no-untyped-call]  # rq's scheduler is unannotated
                scheduler.register_death()
        else:
            scheduler.start()

    def stop_scheduler(self) -> None:
        """Stop the scheduler child, if it runs, and wait for it. Safe to call twice."""
        process = self.scheduler._process if self.scheduler else None
        if process is not None and process.exitcode is None:
            process.terminate()  # SIGTERM: it releases its locks and exits
            process.join()

    def _shutdown(self) -> None:
        # Called from the SIGINT/SIGTERM handler: set flags only, never raise here
        # (see the module docstring). A second signal is a cold shutdown (RQ's).
        self._stop_requested = True
        self.stop_scheduler()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        ready = self._dequeue_ready()
        if ready is not None:
            return ready
        if timeout is None:  # burst: a non-blocking dequeue
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            # max_idle_time makes RQ return None after one idle slice.
            result = super().dequeue_job_and_maintain_ttl(
                min(timeout, DEQUEUE_SLICE), max_idle_time=DEQUEUE_SLICE
            )
            if result is not None:
                return result
        return None

    def _dequeue_ready(self) -> tuple[Job, Queue] | None:
        """While jobs are waiting: RQ's LMOVE into the intermediate list and its fetch of the
        job, in one script (one round trip instead of two). None when the queue is empty
        (then RQ's own blocking dequeue waits for the next job)."""
        queue = self.queues[0]
        while True:
            reply = self._move_and_fetch(keys=[queue.key, queue.intermediate_queue_key])
            if not reply:
                return None
            job_id, flat = reply[0].decode(), reply[1]
            if not flat:
                continue  # gone (expired): RQ passes over such ids the same way
            job = WabaJob(job_id, connection=self.connection, serializer=self.serializer)
            job.restore(dict(zip(flat[::2], flat[1::2], strict=True)))
            job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
            self.set_state(WorkerStatus.IDLE)
            self.heartbeat()
            self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
            return job, queue

    # -- fewer round trips per job ------------------------------------------------------
    # RQ's loop writes the worker's heartbeat up to four times per job, each as two
    # unpipelined commands, sets the same state twice and checks for suspension
    # before every job: about 8 of its ~18 round trips per job. None of these carries
    # crash recovery (the job's own heartbeats and registries do, and they are left
    # alone), so lone worker heartbeats go out at most every HEARTBEAT_EVERY seconds
    # (the worker key lives worker_ttl + 60 s), an unchanged state is not rewritten,
    # and suspension is checked at most once a second.

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None or timeout is not None:
            super().heartbeat(timeout, pipeline)
            return
        moment = time.monotonic()
        if moment - self._beat_at < HEARTBEAT_EVERY:
            return
        self._beat_at = moment
        with self.connection.pipeline() as pipe:
            super().heartbeat(None, pipe)
            pipe.execute()

    def prepare_execution(self, job: Job) -> Execution:
        # RQ sends this bookkeeping and prepare_job_execution's, which follows at once,
        # as two transactions on two round trips; here they go as one transaction.
        pipeline = self.connection.pipeline()
        ttl = self.get_heartbeat_ttl(job)
        self.execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
        self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
        self._preparation = pipeline
        return self.execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        # RQ's prepare_job_execution, in the transaction prepare_execution began.
        pipeline, self._preparation = self._preparation or self.connection.pipeline(), None
        with pipeline:
            self.set_current_job_id(job.id, pipeline=pipeline)
            self.set_current_job_working_time(0, pipeline=pipeline)
            ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(ttl, pipeline=pipeline)
            job.heartbeat(now(), ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            if remove_from_intermediate_queue:
                queue = Queue(job.origin, connection=self.connection)
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            pipeline.execute()
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")  # type: ignore[no-untyped-call]  # rq: unannotated

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # RQ writes last_heartbeat here on its own round trip; the success or failure
        # handling that follows saves the job, this field included.
        job.ended_at = job.last_heartbeat = now()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        moment = time.monotonic()
        if moment - self._suspension_at < SUSPENSION_CHECK_EVERY:
            return
        self._suspension_at = moment
        super().check_for_suspension(burst)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """Log a failing job without its arguments, then run the exception handlers."""
        self.log.error(
            "Worker %s: job %s: exception raised while executing\n%s",
            self.name,
            job.id,
            "".join(traceback.format_exception(*exc_info)),
            extra={"queue": job.origin, "job_id": job.id},
        )
        for handler in self._exc_handlers:
            outcome = handler(job, *exc_info)
            if outcome is not None and not outcome:  # RQ's rule: a falsy non-None stops the chain
                break
