"""The job lifecycle, written once: a job's states, who may move it between them, and the fence.

A job is an RQ 2.12 job hash (``rq:job:<id>``) whose ``status`` is one of RQ's. Our scripts
(the intake's, and the workers' in ``workers/lua/``) and RQ's own tools both act on the same
keys; :data:`MOVES` lists every move either may make, and the README's table "The job
lifecycle" is generated from it (``tests/workers/test_lifecycle.py`` keeps the two equal).

**The fence.** While a job is ``started``, exactly one execution may write for it: the one
named by ``wh:holder`` in the job hash. Every script that writes for an execution — its
ledger records, ``ctx.store``, conversation steps and bursts, its ending (which releases the
conversation's next event), its lease renewal — first calls ``fenced(job, execution)``
(``workers/lua/fence.lua``, prepended to every script by :func:`lua_script`), which checks
the holder *and* ``status == started`` in the same script. The status check is what makes
RQ's own requeue paths harmless: they move a job back to ``queued`` without touching our
holder field, so an old execution of it (a frozen worker that wakes up) is refused. Our own
endings that give a job up (retry, failure, hand-back, re-drive) also clear the holder.

**The quarantine.** A worker's death is charged to the job that caused it, not to the
others it had in flight: a re-drive refunds the attempt of an execution that ran outside its
queue's quarantine slot and marks its job a suspect (``wh:suspect``); a queue runs one
suspect at a time, in the slot (``<queue>:quarantine``), and a death there counts. A suspect
popped while the slot is held waits, ``deferred``, in the slot's line until it is released
(``workers.rqstate`` says why there). ``workers/lua/quarantine.lua`` holds the steps.

**Sends.** The fence guards Redis writes; a request to the portal is guarded by the
execution's lease (``workers.lease``): it starts only while the lease left exceeds the
request's timeout plus :data:`~workers.lease.SEND_MARGIN`, and the re-drive takes a job only
once its lease ended that margin ago.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

__all__ = ["MOVES", "STATES", "Move", "lua_script", "readme_table"]

#: RQ's job statuses, as our scripts use them.
STATES = (
    "queued",
    "deferred",
    "scheduled",
    "started",
    "finished",
    "failed",
    "canceled",
)

#: The scripts every Lua script starts with: RQ's release of dependents and shared steps,
#: then the fence.
PRELUDE = ("common", "fence")


@dataclass(frozen=True, slots=True)
class Move:
    """One way a job moves between states: ``source`` → ``target``, by ``who``, and how."""

    source: str
    target: str
    who: str
    how: str


MOVES: tuple[Move, ...] = (
    Move(
        "(new)",
        "queued",
        "receiver: `service/intake.lua`",
        "its conversation has no unfinished job; the claim and the job are one write",
    ),
    Move(
        "(new)",
        "deferred",
        "receiver: `service/intake.lua`",
        "behind its conversation's unfinished latest job (the tail)",
    ),
    Move(
        "deferred",
        "queued",
        "the ending of its predecessor (`release` in `common.lua`)",
        "its predecessor finished or failed",
    ),
    Move(
        "queued",
        "started",
        "worker: `start.lua`",
        "popped; a new execution holds it (`wh:holder`) under a lease in `rq:wip:<queue>`; "
        "a suspect (`wh:suspect`) only into its queue's empty quarantine slot, which it holds; "
        "if its conversation's latest job (the tail) ended, it becomes the latest; "
        "`<tail>:running` names its execution",
    ),
    Move(
        "queued",
        "deferred",
        "worker: `start.lua`",
        "popped while its conversation's latest job (the tail, not the job it once waited "
        "for) is unfinished and nothing waits for it (RQ's tools re-queued it behind the "
        "conversation's back): re-chained behind that job, not started",
    ),
    Move(
        "queued",
        "deferred",
        "worker: `start.lua`",
        "popped while another job of its conversation runs (the execution named in "
        "`<tail>:running` still holds it: the sweep released this one early, after an "
        "operator removed the job between them): behind the running job",
    ),
    Move(
        "queued",
        "finished",
        "worker: `start.lua`",
        "popped while still in `rq:finished:<queue>`: a stale writer queued it after it ended "
        "(RQ's registry cleanup read it while it ran and wrote its abandonment afterwards); "
        "not run again, its status restored",
    ),
    Move(
        "queued",
        "failed",
        "worker: `start.lua`",
        "popped while still in `rq:failed:<queue>` (as above; RQ's own requeue of a failed "
        "job takes it out of that registry first, and so runs it)",
    ),
    Move(
        "queued",
        "deferred",
        "worker: `start.lua`",
        "a suspect popped while another holds the quarantine slot: waits in the slot's line "
        "(`<queue>:quarantine:line`); the jobs popped after it still start",
    ),
    Move(
        "deferred",
        "queued",
        "the slot's release (`release_slot` in `quarantine.lua`): `finish.lua`, `redrive.lua`",
        "the suspect first in the line, to the front of its queue",
    ),
    Move(
        "started",
        "finished",
        "the holding execution: `finish.lua`",
        "done; its sends recorded, the conversation's next event released, no longer a "
        "suspect, the quarantine slot released if it held it",
    ),
    Move(
        "started",
        "scheduled",
        "the holding execution: `finish.lua`",
        "retry after a delay; the holder is cleared; no longer a suspect, the slot released",
    ),
    Move(
        "started",
        "failed",
        "the holding execution: `finish.lua`",
        "permanent error or attempts spent; the holder is cleared, the next event released, "
        "the slot released",
    ),
    Move(
        "started",
        "queued",
        "the holding execution: `finish.lua` (hand-back)",
        "a stopping worker hands it back to the front of its queue; not an attempt; a "
        "suspect stays one, the slot released",
    ),
    Move(
        "started",
        "queued",
        "any worker: `redrive.lua`",
        "its lease ended `redrive_after(lease)` s ago (5 s by default; its worker died or "
        "froze): to the front, the "
        "holder cleared; outside the quarantine slot the attempt is refunded and the job "
        "becomes a suspect, in the slot it counts and the slot is released",
    ),
    Move(
        "started",
        "failed",
        "any worker: `redrive.lua`",
        "as above, in the slot, on its last attempt (`AbandonedJob`)",
    ),
    Move(
        "scheduled",
        "queued",
        "any worker: `promote.lua`",
        "due (RQ's scheduler's step)",
    ),
    Move(
        "scheduled",
        "deferred",
        "any worker: `promote.lua`",
        "a burst's flush or a step's timeout joins its conversation's chain when it fires",
    ),
    Move(
        "started",
        "queued",
        "RQ: `StartedJobRegistry.cleanup` (`rq info`, RQ's maintenance, rq-dashboard)",
        "only `RQ_MARGIN` (600 s) after a lease ended with no worker of ours to re-drive it; "
        "the holder is kept, so the fence (status) refuses the old execution",
    ),
    Move(
        "failed",
        "queued",
        "operator: `wabahooks failed requeue` (`requeue.lua`)",
        "a fresh set of attempts (`wh:attempts`, `number_of_retries`); its conversation has "
        "no unfinished job: queued, and the conversation's latest",
    ),
    Move(
        "failed",
        "deferred",
        "operator: `wabahooks failed requeue` (`requeue.lua`)",
        "as above, behind its conversation's unfinished latest job, and the latest itself",
    ),
    Move(
        "failed",
        "queued",
        "operator: `rq requeue`, rq-dashboard's Requeue",
        "pushed behind its queue, its attempts as they were (one error fails a job that "
        "had spent them); `start.lua` re-chains it if its conversation moved on",
    ),
    Move(
        "any",
        "(gone) or canceled",
        "operator: `rq empty`, `Job.delete()`, `Job.cancel()` (rq-dashboard's buttons: ours "
        "is read-only)",
        "not ours to refuse; its conversation's later events are released by the sweep (next)",
    ),
    Move(
        "deferred",
        "queued",
        "any worker: `sweep.lua` (a step every ~10 s)",
        "its predecessors are all gone or ended without releasing it (an operator's action)",
    ),
    Move(
        "queued",
        "queued",
        "any worker: `adopt.lua`",
        "left in `rq:queue:_compact:<uuid>` by an interrupted `Queue.compact()`: put back",
    ),
)


def readme_table() -> str:
    """The README's lifecycle table, from :data:`MOVES`."""
    lines = ["| from | to | who | when, and what else |", "|---|---|---|---|"]
    for move in MOVES:
        lines.append(f"| {move.source} | {move.target} | {move.who} | {move.how} |")
    return "\n".join(lines)


def lua_script(name: str, *helpers: str, flags: str = "") -> str:
    """The Lua script ``workers/lua/<name>.lua``, after the prelude (``common.lua``, then the
    fence) and ``helpers`` (more files of ``workers/lua/``). ``flags``: Redis's script flags
    (e.g. ``allow-oom``), declared by a shebang, which must be the script's very first line."""
    folder = files("workers").joinpath("lua")
    parts = [*PRELUDE, *helpers, name]
    shebang = f"#!lua flags={flags}\n" if flags else ""
    return shebang + "".join(
        folder.joinpath(f"{part}.lua").read_text(encoding="utf-8") for part in parts
    )
