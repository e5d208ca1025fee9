"""The agent nudge: one message to an agent shortly before their own 24-hour window closes.

The portal takes free text to a number only within 24 hours of that number's last
message, agents included: an agent who has not written for a day stops receiving
forwards. So when a message is forwarded to an agent, a job of kind ``policy.nudge``
is scheduled (RQ's scheduled registry; the engine promotes it when due) for
``nudge_margin`` seconds before the agent's window closes. It is scheduled once per
window (a marker key, set with the job in one script), and its send goes through the
ledger, so it is sent once however often the job runs; it does nothing if the agent
wrote since (their window moved: a later forward schedules the next nudge).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from service.identity import Kind
from service.jobs import FORMAT_VERSION, JOB_FUNCTION, queue_name
from service.keys import RQ_QUEUES, rq_job, rq_queue, rq_scheduled
from service.logs import mask_phone
from service.settings import DEFAULT_FAILURE_TTL, DEFAULT_JOB_TIMEOUT, DEFAULT_RESULT_TTL
from workers.router import Router
from workers.rqstate import rq_timestamp

if TYPE_CHECKING:
    from workers.policy.scope import EventScope

__all__ = ["NUDGE_EVENT", "NUDGE_KIND", "build", "schedule"]

log = structlog.get_logger("wabahooks.policy")

#: The job kind (``kind`` of the job's arguments) and the envelope's ``event``.
NUDGE_KIND = "policy.nudge"
NUDGE_EVENT = "wabahooks.policy.nudge"

# KEYS: marker, job hash, scheduled registry, RQ's set of queues, queue list.
# ARGV: marker TTL, score, job fields (flat pairs). Writes nothing when the marker exists.
_SCHEDULE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[3], ARGV[2], string.sub(KEYS[2], 8))
redis.call('SADD', KEYS[4], KEYS[5])
return 1
"""


def _ref(agent: str, anchor: int) -> str:
    """The nudge's identity without the number (event keys are logged with every line)."""
    return hashlib.sha256(f"{agent}:{anchor}".encode()).hexdigest()[:24]


async def schedule(scope: EventScope, agent: str) -> bool:
    """Schedule ``agent``'s nudge for their current window (once); return if scheduled now."""
    anchor_at = await scope.store.inbound_at(agent)
    if anchor_at is None:
        return False  # never wrote: the portal refuses forwards until they do
    config = scope.config.window
    closes = anchor_at + 24 * 3600 - config.margin
    now = scope.now()
    if now >= closes:
        return False
    at = max(now, closes - config.nudge_margin)
    anchor = int(anchor_at)
    envelope = {
        "event": NUDGE_EVENT,
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
        "data": {"agent": agent, "anchor": anchor},
    }
    stamp = rq_timestamp()
    kwargs = {
        "envelope": envelope,
        "event_key": f"{NUDGE_KIND}:{_ref(agent, anchor)}",
        "kind": NUDGE_KIND,
        "conversation": None,
        "received_at": stamp,
        "version": FORMAT_VERSION,
    }
    queue = queue_name(scope.policy.prefix, Kind.OTHER)
    job_id = os.urandom(16).hex()
    fields: dict[str, Any] = {
        "created_at": stamp, "data": json.dumps([JOB_FUNCTION, None, [], kwargs]),
        "origin": queue, "description": f"{NUDGE_KIND} {mask_phone(agent)}",
        "timeout": DEFAULT_JOB_TIMEOUT, "result_ttl": DEFAULT_RESULT_TTL,
        "failure_ttl": DEFAULT_FAILURE_TTL, "status": "scheduled",
        "success_callback_name": "", "failure_callback_name": "", "stopped_callback_name": "",
        "started_at": "", "ended_at": "", "last_heartbeat": "", "worker_name": "", "group_id": "",
    }  # fmt: skip
    redis = scope.store.redis
    keys = [scope.store.keys.nudge(agent, anchor), rq_job(job_id),
            rq_scheduled(queue), RQ_QUEUES, rq_queue(queue)]  # fmt: skip
    ttl = int(closes - now) + 24 * 3600
    flat = [item for pair in fields.items() for item in pair]
    done = await redis.eval(_SCHEDULE, len(keys), *keys, ttl, int(at), *flat)
    if done:
        log.info("policy.nudge.scheduled", agent=mask_phone(agent), at=int(at))
    return bool(done)


def build(scope_of: Any) -> Router:
    """The router nudge jobs run (alone: never your handlers). ``scope_of(ctx)``: the
    event's policy scope."""
    router = Router("policy")

    @router.unknown(when=lambda event: event.envelope.get("event") == NUDGE_EVENT)
    async def nudge(event: Any, ctx: Any) -> None:
        scope: EventScope = scope_of(ctx)
        data = event.data
        agent, anchor = str(data.get("agent", "")), int(data.get("anchor", 0))
        latest = await scope.store.inbound_at(agent)
        if latest is None or int(latest) != anchor:
            ctx.log.info(
                "policy.nudge.skipped", agent=mask_phone(agent), reason="agent wrote since"
            )
            return
        if not (await scope.window_of(agent)).open:
            ctx.log.info("policy.nudge.skipped", agent=mask_phone(agent), reason="window closed")
            return
        await ctx.portal.send_text(
            agent, scope.config.window.nudge, step="nudge", transactional=True
        )
        ctx.log.info("policy.nudge.sent", agent=mask_phone(agent))

    return router
