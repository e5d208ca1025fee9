"""Every Redis key wabahooks reads or writes, named once.

Two families share the server:

- **Ours**, under ``WABAHOOKS_QUEUE_PREFIX`` (``wabahooks:`` by default): :class:`Keys` builds
  them from the prefix. The receiver writes claims and tails, the workers the conversation
  store, the sent-id sets and the portal limiter's keys, ``forget`` removes a contact's, and the
  queue names themselves carry the prefix (``wabahooks:messages``…). Features with a family of
  their own name it here too: the conversation's step and bursts (:class:`Keys`), the event
  archive (:class:`ArchiveKeys`), the conversation policy (:class:`PolicyKeys`), a queue's
  quarantine (:func:`quarantine`, :func:`quarantine_line`: named after the queue, whose name
  carries the prefix).
- **RQ's**, in RQ 2.x's layout (``rq:job:<id>``, ``rq:queue:<name>``…): the functions below, used
  by the intake, the worker's state module and the metrics. The Lua scripts
  (``service/intake.lua``, ``workers/lua/*.lua``) spell the same names; the tests compare what
  they leave with what RQ itself writes (``tests/workers/test_rq_surface.py``).

The README's Retention table lists our keys with their lifetimes (the archive's, the policy's
and the conversations' are in their own sections); change a name here and there, or not at all:
keys outlive deploys.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_PREFIX",
    "RQ_QUEUES",
    "RQ_STATE_KEYS",
    "RQ_SUSPENDED",
    "RQ_WORKERS",
    "ArchiveKeys",
    "Keys",
    "PolicyKeys",
    "limiter_contact",
    "limiter_keys",
    "quarantine",
    "quarantine_line",
    "rq_deferred",
    "rq_failed",
    "rq_finished",
    "rq_job",
    "rq_queue",
    "rq_queue_workers",
    "rq_scheduled",
    "rq_started",
    "rq_worker",
]

#: The default ``WABAHOOKS_QUEUE_PREFIX``: our keys and our queue names start with it.
DEFAULT_PREFIX = "wabahooks:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Our keys under one prefix (``WABAHOOKS_QUEUE_PREFIX``)."""

    prefix: str = DEFAULT_PREFIX

    def queue(self, name: str) -> str:
        """The RQ queue ``name`` (``messages``, ``statuses``, ``other``) as deployed."""
        return self.prefix + name

    def claim(self, event_key: str) -> str:
        """Marks a delivery's identity as received, for the dedupe window."""
        return f"{self.prefix}claim:{event_key}"

    def tail(self, kind: str, conversation: str) -> str:
        """The id of a conversation's latest job: the next event of ``kind`` waits for it."""
        return f"{self.prefix}tail:{kind}:{conversation}"

    @staticmethod
    def running(tail: str) -> str:
        """The execution of a conversation's job running now (``<job>:<execution>``), next to
        its tail (``workers/lua/start.lua`` derives it from the tail's name, same hash tag)."""
        return f"{tail}:running"

    def store(self, conversation: str) -> str:
        """A conversation's handler state (``ctx.store``): a contact's number or a message id."""
        return f"{self.prefix}store:{conversation}"

    def sent_prefix(self) -> str:
        """What :meth:`sent` puts before the number (the ledger appends numbers itself)."""
        return f"{self.prefix}sent:"

    def sent(self, phone: str) -> str:
        """Ids of the messages sent to ``phone`` (status records are found through them)."""
        return self.sent_prefix() + phone

    def conversation(self, phone: str) -> str:
        """A contact's pending wait-for-reply step (``ctx.expect``): step, data, generation."""
        return f"{self.prefix}conv:{phone}"

    def burst(self, phone: str, handler: str) -> str:
        """The burst of messages a coalescing ``handler`` gathers for a contact."""
        return f"{self.prefix}burst:{phone}:{handler}"

    def bursts(self, phone: str) -> str:
        """A SCAN pattern matching every burst of a contact (a number has no glob characters)."""
        return f"{self.prefix}burst:{phone}:*"

    def redis_epoch(self) -> str:
        """Which Redis this is (``run_id``, ``replid``) and its epoch ``n``, bumped by the first
        worker that sees it restarted or failed over (``workers.epoch``); every job is stamped
        with the epoch it was enqueued in (``wh:epoch``)."""
        return f"{self.prefix}redis:epoch"

    def portal(self) -> str:
        """The prefix of the shared portal rate limiter's keys (:func:`limiter_keys`)."""
        return f"{self.prefix}portal:"

    def unparsed(self) -> str:
        """The stream of verified deliveries no event model could read."""
        return f"{self.prefix}unparsed"


def limiter_keys(portal: str) -> list[str]:
    """The shared limiter's keys under ``portal`` (:meth:`Keys.portal`): its token bucket, the
    time a 429 blocks sends until, and the learnt rate."""
    return [f"{portal}bucket", f"{portal}blocked-until", f"{portal}rate"]


def limiter_contact(portal: str, contact: str) -> str:
    """The limiter's pacing of sends to one contact."""
    return f"{portal}contact:{contact}"


# -- feature families under the prefix: their layout is documented with the feature ---------------


@dataclass(frozen=True)
class ArchiveKeys:
    """The event archive's keys (``service.archive``; README "Event archive")."""

    prefix: str = DEFAULT_PREFIX

    def entry(self, job_id: str) -> str:
        return f"{self.prefix}archive:event:{job_id}"

    @property
    def time(self) -> str:
        return f"{self.prefix}archive:time"

    @property
    def feed(self) -> str:
        return f"{self.prefix}archive:feed"

    def contact(self, token: str) -> str:
        return f"{self.prefix}archive:contact:{token}"


@dataclass(frozen=True)
class PolicyKeys:
    """The conversation policy's keys (``service.policystore``; README "Conversation policy")."""

    prefix: str = DEFAULT_PREFIX

    @property
    def optout(self) -> str:
        return f"{self.prefix}policy:optout"

    @property
    def optout_key(self) -> str:
        return f"{self.prefix}policy:optout-key"

    @property
    def open(self) -> str:
        return f"{self.prefix}policy:open"

    def contact(self, phone: str) -> str:
        return f"{self.prefix}policy:contact:{phone}"

    def forwarded(self, message_id: str) -> str:
        return f"{self.prefix}policy:fwd:{message_id}"

    def intents(self, phone: str) -> str:
        return f"{self.prefix}policy:intents:{phone}"

    def ours(self, phone: str) -> str:
        return f"{self.prefix}policy:ours:{phone}"

    def nudge(self, agent: str, anchor: int) -> str:
        return f"{self.prefix}policy:nudge:{agent}:{anchor}"


# -- a queue's quarantine: under the queue's own name (which carries the prefix), so that a
# -- script that knows a queue knows them; the workers' scripts get them as KEYS ---------------


def quarantine(queue: str) -> str:
    """A queue's quarantine slot: the one suspect execution of the queue allowed to run
    (``<job id>:<execution id>``; README "The job lifecycle")."""
    return f"{queue}:quarantine"


def quarantine_line(queue: str) -> str:
    """The queue's suspects waiting for its quarantine slot, in order (job ids)."""
    return f"{queue}:quarantine:line"


#: RQ's set of every queue's key.
RQ_QUEUES = "rq:queues"


def rq_job(job_id: str) -> str:
    """A job's hash."""
    return f"rq:job:{job_id}"


def rq_queue(queue: str) -> str:
    """A queue's list of job ids ready to run."""
    return f"rq:queue:{queue}"


def rq_deferred(queue: str) -> str:
    """Jobs waiting for their dependency (the conversation's previous job)."""
    return f"rq:deferred:{queue}"


def rq_scheduled(queue: str) -> str:
    """Jobs waiting for a time (a retry's delay), scored by it."""
    return f"rq:scheduled:{queue}"


def rq_started(queue: str) -> str:
    """Jobs running, scored by their lease's end (RQ 2's ``wip`` registry)."""
    return f"rq:wip:{queue}"


def rq_failed(queue: str) -> str:
    """Failed jobs, scored by their expiry."""
    return f"rq:failed:{queue}"


def rq_finished(queue: str) -> str:
    """Finished jobs, scored by their expiry."""
    return f"rq:finished:{queue}"


#: A queue's jobs by state (the ``state`` label of ``wabahooks_jobs``): LLEN for ``queued``,
#: ZCARD for the others.
RQ_STATE_KEYS = {
    "queued": rq_queue,
    "deferred": rq_deferred,
    "scheduled": rq_scheduled,
    "started": rq_started,
    "failed": rq_failed,
    "finished": rq_finished,
}


#: RQ's set of registered workers, a worker's hash, a queue's workers, the suspension flag.
RQ_WORKERS = "rq:workers"
RQ_SUSPENDED = "rq:suspended"


def rq_worker(name: str) -> str:
    """A worker's hash (name, queues, birth, heartbeat)."""
    return f"rq:worker:{name}"


def rq_queue_workers(queue: str) -> str:
    """The workers listening on ``queue``."""
    return f"rq:workers:{queue}"
