"""``wabahooks forget PHONE``: remove what Redis keeps about one contact (data protection).

Removed, under ``WABAHOOKS_QUEUE_PREFIX`` (``wabahooks:``):

- ``store:<phone>``: the conversation's handler state;
- ``tail:message:<phone>``: the conversation's latest job id, and ``tail:message:<phone>:running``
  (its running job's execution);
- ``conv:<phone>`` and ``burst:<phone>:*``: its pending step and the bursts being gathered
  (Conversations);
- ``sent:<phone>``: ids of messages sent to the contact and, for each of those messages,
  its status conversation (``store:<id>``, folded statuses among it, and ``tail:status:<id>``
  with its ``:running``);
- status conversations of other messages to the contact, found by their id (a WhatsApp
  message id encodes the contact's number): a scan of ``store:wamid.*`` and
  ``tail:status:wamid.*``;
- failed jobs of the contact (their ``conversation`` is the number or one of those message
  ids, or the envelope is from or to the number), with their ledgers (``wh:`` fields of the
  job's hash) and results;
- the contact's archived events (``service.archive``), found through its keyed-hash index.
- the conversation policy's records (``service.policystore``): window and handover, open
  send intents, forwarded-message links, nudge markers. An opt-out entry loses the number
  but keeps its keyed hash, so the contact is still not messaged (``keep_optout=False``,
  ``--drop-optout``: removed too).

Not removed: jobs still queued or running (they would fail; run it again once they are
done), finished jobs until RQ expires them, the claims that deduplicate deliveries (their
keys hold message ids, not numbers, and must stay for the dedupe window), and the portal's
own history.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
import redis
from rq.job import Job

from service.archive import forget_archive
from service.cli.admin import QUEUES, connect
from service.cli.common import failed_jobs
from service.keys import DEFAULT_PREFIX, Keys
from service.logs import id_key
from service.policystore import PolicyKeys, forget_policy
from service.portal.validation import check_phone

__all__ = ["Forgotten", "forget", "forget_contact", "wamid_phone"]

_DIGITS = re.compile(rb"\d{6,}")


def wamid_phone(message_id: str) -> set[str]:
    """Return the digit runs encoded in a ``wamid.`` id (the contact's number among them)."""
    if not message_id.startswith("wamid."):
        return set()
    tail = message_id[6:]
    tail += "=" * (-len(tail) % 4)
    found: set[str] = set()
    for altchars in (None, b"-_"):  # standard or URL-safe alphabet
        try:
            raw = base64.b64decode(tail, altchars=altchars)
        except (binascii.Error, ValueError):
            continue
        found.update(m.decode() for m in _DIGITS.findall(raw))
    return found


@dataclass
class Forgotten:
    """What was removed, by kind."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, count: int = 1) -> None:
        if count:
            self.counts[kind] = self.counts.get(kind, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _scan(connection: redis.Redis, pattern: str) -> Iterator[str]:
    for key in connection.scan_iter(match=pattern, count=1000):
        yield key.decode() if isinstance(key, bytes) else str(key)


def _contact_of(job: Job) -> tuple[Any, Any, Any]:
    try:
        kwargs = job.kwargs
    except Exception:  # a job we cannot decode is not ours to judge
        return None, None, None
    envelope = kwargs.get("envelope")
    data = envelope.get("data") if isinstance(envelope, dict) else None
    data = data if isinstance(data, dict) else {}
    return kwargs.get("conversation"), data.get("from"), data.get("recipient")


def forget_contact(
    connection: redis.Redis,
    phone: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    queues: Iterable[str] = QUEUES,
    progress: Callable[[str], None] = lambda _line: None,
    archive_key: bytes | None = None,
    keep_optout: bool = True,
) -> Forgotten:
    """Remove what Redis keeps about the contact ``phone``; return what was removed.

    ``archive_key``: the key the archive's contact index is hashed with (``id_key()``);
    without it, archived events cannot be found and stay until they expire."""
    gone = Forgotten()
    if archive_key is not None:
        gone.add("archived event", forget_archive(connection, phone, archive_key, prefix))
    policy = forget_policy(connection, phone, PolicyKeys(prefix), keep_optout=keep_optout)
    for kind, count in policy.items():
        gone.add(kind, count)
    keys = Keys(prefix)
    sent_key = keys.sent(phone)
    members: Any = connection.smembers(sent_key)
    message_ids = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
    progress("scanning status records")
    for pattern in (keys.store("wamid.*"), keys.tail("status", "wamid.*")):
        for key in _scan(connection, pattern):
            if key.endswith(":running"):  # a status tail's running marker: its tail's id counts
                continue
            message_id = key.rsplit(":", 1)[1]
            if phone in wamid_phone(message_id):
                message_ids.add(message_id)
    gone.add("conversation state", connection.delete(keys.store(phone)))
    tail = keys.tail("message", phone)
    gone.add("conversation tail", connection.delete(tail))
    gone.add("running-job marker", connection.delete(Keys.running(tail)))
    gone.add("conversation step", connection.delete(keys.conversation(phone)))
    for key in _scan(connection, keys.bursts(phone)):
        gone.add("burst", connection.delete(key))
    gone.add("sent-message id set", connection.delete(sent_key))
    for message_id in sorted(message_ids):
        gone.add("message status record", connection.delete(keys.store(message_id)))
        status_tail = keys.tail("status", message_id)
        gone.add("message status tail", connection.delete(status_tail))
        gone.add("running-job marker", connection.delete(Keys.running(status_tail)))
    for _queue, job in failed_jobs(connection, [keys.queue(q) for q in queues], progress):
        conversation, sender, recipient = _contact_of(job)
        if phone in (conversation, sender, recipient) or conversation in message_ids:
            job.delete()  # its hash (ledger fields included), results, registry entry
            gone.add("failed job")
    return gone


@click.command()
@click.argument("phone")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--drop-optout",
    is_flag=True,
    help="Also remove the contact from the opt-out list (by default its keyed hash is kept, "
    "so a contact who sent STOP is still not messaged).",
)
def forget(phone: str, yes: bool, drop_optout: bool) -> None:
    """Remove a contact's data from Redis (a data-protection request).

    PHONE is the number as the portal sends it: digits with country code, no +.
    Removes the conversation state, its tail, its pending step and bursts, the
    sent-message ids, status records
    of messages to the contact, and the contact's failed jobs with their ledgers.
    The conversation policy's records go too, but a contact who opted out stays on
    the opt-out list as a keyed hash of the number (--drop-optout removes that too).
    Jobs still queued or running, finished jobs (until they expire), deduplication
    claims and the portal's own history are not touched.
    """
    phone = phone.strip().removeprefix("+").replace(" ", "")
    if problem := check_phone(phone):
        raise click.BadParameter(f"{phone!r}: {problem.detail}", param_hint="PHONE")
    settings, connection = connect()
    if not yes:
        click.confirm(f"Remove everything Redis keeps about {phone}?", abort=True)

    def progress(line: str) -> None:
        click.echo(line, err=True)

    archive_key = id_key()
    if archive_key is None:
        click.echo(
            "Archived events (WABAHOOKS_ARCHIVE) are not removed: they are indexed by a keyed "
            "hash; set WABAHOOKS_LOG_KEY (or WABA_WEBHOOK_SECRET) as the workers have it",
            err=True,
        )
    gone = forget_contact(
        connection,
        phone,
        prefix=settings.queue_prefix,
        progress=progress,
        archive_key=archive_key,
        keep_optout=not drop_optout,
    )
    if not gone.total:
        click.echo(f"Nothing stored about {phone}.")
        return
    for kind, count in gone.counts.items():
        click.echo(f"removed {count} {kind}{'s' if count > 1 else ''}")
    click.echo(
        "Not removed: jobs still queued or running, finished jobs until they expire, "
        "deduplication claims, and the portal's own history."
    )
