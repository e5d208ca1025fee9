"""Which Redis the workers talk to, and whether it may have lost writes since a job was enqueued.

With ``appendfsync everysec``, a host crash loses up to the last second of writes; a failover
loses what the replica had not received. A job whose intent was among them finds no intent on
its re-run, so it would not look for its send in the portal's history before sending again.
So Redis's identity is kept in Redis (``Keys.redis_epoch``: ``run_id`` — new at every start —
and ``replid`` — new at every promotion — and an epoch number ``n``), and every job is
stamped at intake with the epoch it was enqueued in (``wh:epoch``, ``service/chain.lua``).
Each worker compares the identity Redis reports (``INFO``) with the one stored, when it starts,
after it lost its connection, and at every lease renewal; the first to see a difference bumps
the epoch. A job enqueued in an earlier epoch is **unproven**: whatever its attempt number, each
of its sends without an intent is first looked for in the history (``workers.effects``).
A Redis restarted cleanly lost nothing, but it cannot be told apart: its older jobs pay one
history page per send, once.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import structlog

from service.keys import Keys

__all__ = ["RedisEpoch"]

log = structlog.get_logger("wabahooks.worker")

# KEYS: the epoch hash. ARGV: the identity last read (run_id, replid), the one Redis reports.
# Compare-and-set: the first worker to see the change bumps the epoch; the others find it
# done. A hash never written is this Redis's first epoch (0), nothing to bump.
_ADVANCE = """
local f = redis.call('HMGET', KEYS[1], 'run_id', 'replid', 'n')
if not f[3] then
  redis.call('HSET', KEYS[1], 'run_id', ARGV[3], 'replid', ARGV[4], 'n', 0)
  return 0
end
if f[1] == ARGV[3] and f[2] == ARGV[4] then return tonumber(f[3]) end
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return tonumber(f[3]) end
redis.call('HSET', KEYS[1], 'run_id', ARGV[3], 'replid', ARGV[4])
return redis.call('HINCRBY', KEYS[1], 'n', 1)
"""


class RedisEpoch:
    """The Redis epoch as one worker last saw it: :attr:`current` (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._key = keys.redis_epoch()
        self._advance = client.register_script(_ADVANCE)
        #: The epoch now; jobs stamped with an earlier one are unproven.
        self.current = 0
        #: Whether to look again before the next job starts (a lost connection).
        self.stale = True

    async def check(self) -> int:
        """Read Redis's identity, bump the epoch if it changed; return the epoch."""
        server: Any = await self._redis.info("server")
        replication: Any = await self._redis.info("replication")
        run_id = str(server.get("run_id", ""))
        replid = str(replication.get("master_replid", ""))
        stored: Any = await self._redis.hmget(self._key, ["run_id", "replid"])
        old = [(value or b"").decode() for value in stored]
        epoch = int(await self._advance(keys=[self._key], args=[*old, run_id, replid]))
        if epoch != self.current and (self.current or epoch):
            log.warning("redis.epoch_changed", epoch=epoch, run_id=run_id, replid=replid)
        self.current, self.stale = epoch, False
        return epoch

    def unproven(self, fields: dict[bytes, bytes]) -> bool:
        """Whether a job (its hash) was enqueued before the epoch this worker last saw."""
        return int(fields.get(b"wh:epoch", b"0") or 0) < self.current
