"""``wabahooks conversation show PHONE``: a contact's pending step and bursts, as Redis has them.

Joins the ``wabahooks`` command through the entry-point group ``wabahooks.cli``. Read only;
``wabahooks forget PHONE`` removes what it shows.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click
import redis

from service.cli.common import connect, settings_or_exit
from service.keys import Keys
from service.portal.validation import check_phone

__all__ = ["conversation", "describe"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _when(epoch: str) -> str:
    moment = float(epoch)
    left = moment - time.time()
    stamp = datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
    return f"{stamp} (in {left:.0f} s)" if left >= 0 else f"{stamp} ({-left:.0f} s ago)"


def _job_status(connection: redis.Redis, job_id: str | None) -> str | None:
    if not job_id:
        return None
    status = connection.hget(f"rq:job:{job_id}", "status")
    return _text(status) if status is not None else "gone"


def describe(connection: redis.Redis, phone: str, prefix: str) -> dict[str, Any]:
    """Return the contact's pending step (or None) and bursts, JSON-ready."""
    raw: Any = connection.hgetall(Keys(prefix).conversation(phone))
    fields = {_text(k): _text(v) for k, v in raw.items()}
    step = None
    if "step" in fields:
        step = {
            "step": fields["step"],
            "generation": int(fields["gen"]),
            "data": json.loads(fields["data"]),
            "asked_by": fields.get("handler"),
            "times_out": _when(fields["deadline"]),
            "timeout_job": fields.get("timer"),
            "timeout_job_status": _job_status(connection, fields.get("timer")),
        }
    bursts = []
    for key in sorted(_text(k) for k in connection.scan_iter(match=Keys(prefix).bursts(phone))):
        burst = {_text(k): _text(v) for k, v in connection.hgetall(key).items()}
        count = int(burst.get("n", "0"))
        texts = []
        for i in range(1, count + 1):
            message = json.loads(burst.get(f"m:{i}", "null") or "null") or {}
            data = (message.get("envelope") or {}).get("data") or {}
            texts.append((data.get("text") or {}).get("body") or f"({data.get('type')})")
        bursts.append(
            {
                "handler": key.removeprefix(f"{prefix}burst:{phone}:"),
                "messages": count,
                "texts": texts,
                "flushes": _when(burst["due"]) if "due" in burst else None,
                "flush_job": burst.get("job"),
                "flush_job_status": _job_status(connection, burst.get("job")),
            }
        )
    return {"phone": phone, "generation": int(fields.get("gen", 0)), "step": step, "bursts": bursts}


@click.group()
def conversation() -> None:
    """Inspect a contact's conversation (pending step, bursts being gathered)."""


@conversation.command()
@click.argument("phone")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(phone: str, as_json: bool) -> None:
    """Show PHONE's pending step (its data, generation, timeout) and bursts.

    PHONE is the number as the portal sends it: digits with country code, no +.
    """
    phone = phone.strip().removeprefix("+").replace(" ", "")
    if problem := check_phone(phone):
        raise click.BadParameter(f"{phone!r}: {problem.detail}", param_hint="PHONE")
    settings = settings_or_exit()
    state = describe(connect(settings), phone, settings.queue_prefix)
    if as_json:
        click.echo(json.dumps(state, ensure_ascii=False))
        return
    step = state["step"]
    if step is None and not state["bursts"]:
        click.echo(f"{phone}: no pending step, no burst (generation {state['generation']}).")
        return
    if step is None:
        click.echo(f"{phone}: no pending step (generation {state['generation']}).")
    else:
        click.echo(
            f"{phone}: waiting for step {step['step']!r} (generation {step['generation']}, "
            f"asked by {step['asked_by']}), times out {step['times_out']} "
            f"[job {step['timeout_job']}: {step['timeout_job_status']}]"
        )
        click.echo(f"  data: {json.dumps(step['data'], ensure_ascii=False)}")
    for burst in state["bursts"]:
        click.echo(
            f"burst for {burst['handler']}: {burst['messages']} message(s), flushes "
            f"{burst['flushes']} [job {burst['flush_job']}: {burst['flush_job_status']}]"
        )
        for text in burst["texts"]:
            click.echo(f"  - {text}")
