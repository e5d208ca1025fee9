"""``wabahooks failed show JOB``, and how ``failed list`` says what happened to a failed job.

A failed job is final: its attempts are spent or its error was one retrying cannot fix. The
list says which, with the attempts made; ``show`` gives one job whole: the reason, the
traceback, the attempts, the handlers that had already finished (a requeue skips them; their
sends are in the ledger and are not repeated) and the event, with phone numbers masked and
message ids replaced by the tokens the logs use (``wabahooks log-id``).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from datetime import datetime
from typing import Any

import click
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from service.logs import IdHasher, id_key, mask_phone
from workers.handlerdata import handler_label
from workers.ledger import JOB_FIELD_PREFIX

__all__ = ["Failure", "failure_of", "mask_event", "show"]

_PERMANENT = "(permanent: not retried)"
_HANDLER_FAILED = "workers.dispatch.HandlerFailed: "
#: Digit runs as long as a phone number (E.164: up to 15), with an optional +.
_PHONE = re.compile(r"(?<![\w.])\+?\d{8,15}(?![\w.])")
#: Fields whose digits are not phone numbers.
_NOT_PHONES = frozenset({"timestamp", "id", "code"})


class Failure:
    """What happened to one failed job, read from RQ's result and the ledger's fields."""

    def __init__(self, job: Job, fields: dict[bytes, bytes]) -> None:
        result = job.latest_result()
        self.result = result
        when: datetime | None = result.created_at if result else job.ended_at
        self.when = when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"
        self.traceback = (result.exc_string if result and result.exc_string else None) or ""
        self.attempts = int(fields.get(b"wh:attempts", b"0") or 0)
        prefix = (JOB_FIELD_PREFIX + "h:").encode()
        self.done = sorted(
            handler_label(key[len(prefix) :].decode()) for key in fields if key.startswith(prefix)
        )

    @property
    def error(self) -> str:
        """The error's last line (an older worker's "(will be retried)" dropped)."""
        if self.result is not None and self.result.type == Result.Type.MAX_RETRIES_EXCEEDED:
            return "retries exhausted"
        lines = [line.strip() for line in self.traceback.splitlines() if line.strip()]
        if not lines:
            return "-"
        last = lines[-1].replace(" (will be retried)", "").removeprefix(_HANDLER_FAILED)
        return _mask_string(last)

    @property
    def happened(self) -> str:
        """One phrase: why the job stopped being retried."""
        tries = f"{self.attempts} attempt{'s' * (self.attempts != 1)}" if self.attempts else ""
        if _PERMANENT in self.traceback or "workers.dispatch.Permanent" in self.traceback:
            return "permanent error, not retried" + (f" ({tries})" if tries else "")
        if self.attempts > 1:
            return f"gave up after {tries}"
        return "failed" + (f" ({tries})" if tries else "")


def failure_of(connection: redis.Redis, job: Job) -> Failure:
    fields: Any = connection.hgetall(Job.key_for(job.id))
    return Failure(job, dict(fields))


def _mask_string(value: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group()) or "", value)


def mask_event(value: Any, hasher: IdHasher, key: str = "") -> Any:
    """Return ``value`` with phone numbers masked and message ids hashed as in the logs."""
    if isinstance(value, dict):
        return {k: mask_event(v, hasher, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_event(item, hasher, key) for item in value]
    if isinstance(value, str):
        scrubbed = hasher.scrub(value)
        return scrubbed if key in _NOT_PHONES else _mask_string(scrubbed)
    return value


@click.command("show")
@click.argument("job_id")
def show(job_id: str) -> None:
    """Show one failed job: why, its traceback, attempts, handlers done, the event (masked)."""
    from service.cli.common import connect, settings_or_exit

    settings = settings_or_exit()
    connection = connect(settings)
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        click.echo(
            f"wabahooks: no job {job_id!r} (purged, expired after WABAHOOKS_FAILURE_TTL, or a "
            "typo): see `wabahooks failed list`",
            err=True,
        )
        sys.exit(1)
    key = id_key()
    hasher = IdHasher(key or secrets.token_bytes(32))
    failure = failure_of(connection, job)
    try:
        kwargs = job.kwargs
    except Exception:  # noqa: BLE001 - undecodable data is shown as such
        kwargs = {}
    status = job.get_status()
    click.echo(f"job         {job.id}")
    click.echo(f"queue       {job.origin}  (status: {status})")
    click.echo(f"event key   {hasher.scrub(str(kwargs.get('event_key', '-')))}")
    click.echo(f"failed at   {failure.when}")
    click.echo(f"what        {failure.happened}")
    click.echo(f"error       {hasher.scrub(failure.error)}")
    click.echo(f"attempts    {failure.attempts or '-'}")
    done = ", ".join(failure.done) if failure.done else "none"
    click.echo(f"done        {done}  (a requeue skips these; their sends are not repeated)")
    click.echo("\nevent (phone numbers masked, message ids as in the logs):")
    event = mask_event(kwargs.get("envelope"), hasher)
    click.echo(json.dumps(event, indent=2, ensure_ascii=False))
    if failure.traceback:
        click.echo("\ntraceback:")
        click.echo(_mask_string(hasher.scrub(failure.traceback)).rstrip())
    click.echo(
        "\nWhat now: fix the cause (the handler, its configuration, or the portal account), "
        f"then `wabahooks failed requeue {job.id}`; or leave it: it expires after "
        "WABAHOOKS_FAILURE_TTL."
    )
