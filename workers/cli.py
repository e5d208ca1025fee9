"""``wabahooks failed`` and ``wabahooks metrics``, and what the queue side's commands share
(``wabahooks worker`` is ``workers.workercli``).

They join the ``wabahooks`` command through the entry-point group ``wabahooks.cli``
(see ``pyproject.toml``), so ``service`` never imports ``workers``. Queues are named
by their suffix (``messages``, ``statuses``, ``other``); ``WABAHOOKS_QUEUE_PREFIX``
is added. Every job is read with RQ's ``JSONSerializer``, as the receiver writes it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import suppress

import click
import redis
import redis.asyncio
import structlog
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from service.cli.common import connect, fail, failed_jobs, settings_or_exit, table
from service.jobs import QUEUE_NAMES
from service.keys import Keys
from service.settings import ConfigError

__all__ = [
    "DEFAULT_QUEUE",
    "QUEUES",
    "QUEUE_CHOICE",
    "failed",
    "metrics",
    "settings_or_exit",  # service.cli.common's, re-exported for the workers' commands
]

#: Queue suffixes, in the order the README lists them.
QUEUES = tuple(dict.fromkeys(QUEUE_NAMES.values()))
#: The queue a worker serves when none is named.
DEFAULT_QUEUE = "messages"


QUEUE_CHOICE = click.Choice(QUEUES)


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9108, show_default=True, type=int, help="Port to listen on.")
def metrics(host: str, port: int) -> None:
    """Serve this host's worker metrics and the queue depths to Prometheus.

    Sums what every `wabahooks worker` with the same PROMETHEUS_MULTIPROC_DIR
    counted, and reads queue depths from Redis at each scrape. Needs REDIS_URL
    and PROMETHEUS_MULTIPROC_DIR.
    """
    from service.logs import configure_logging
    from workers.metrics import MULTIPROC_ENV, multiprocess_dir, scrape_registry, serve

    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    try:
        path = multiprocess_dir()
    except ConfigError as exc:
        fail(str(exc))
    if path is None:
        fail(
            f"{MULTIPROC_ENV} is not set: set it, for this command and every "
            "worker on the host, to one directory the workers write their metrics to"
        )
    connection = connect(settings)
    queues = [settings.keys.queue(name) for name in QUEUES]
    structlog.get_logger("wabahooks.metrics").info(
        "metrics.started", url=f"http://{host}:{port}/metrics", directory=path
    )
    try:
        serve(scrape_registry(path, connection, queues), host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} ({exc})", 1)


@click.group()
def failed() -> None:
    """List, show, requeue or purge failed jobs (RQ's failed registries)."""


def _queues(connection: redis.Redis, keys: Keys, only: str | None) -> list[Queue]:
    names = [only] if only else list(QUEUES)
    return [Queue(keys.queue(n), connection=connection, serializer=JSONSerializer) for n in names]


def _failed_jobs(queues: list[Queue]) -> Iterator[tuple[Queue, Job]]:
    """Every failed job of ``queues`` (the one scanner, ``service.cli.common.failed_jobs``)."""
    if not queues:
        return
    by_name = {q.name: q for q in queues}
    for name, job in failed_jobs(queues[0].connection, by_name):
        yield by_name[name], job


def _event_key(job: Job) -> str:
    try:
        return str(job.kwargs.get("event_key", "-"))
    except Exception:  # a job these commands cannot decode is still listed
        return "?"


@failed.command("list")
@click.option("--queue", type=QUEUE_CHOICE, help="Only this queue [default: all].")
def list_failed(queue: str | None) -> None:
    """Show failed jobs: id, queue, event key, when, what happened, the error's last line."""
    from workers.failedshow import failure_of

    settings = settings_or_exit()
    connection = connect(settings)
    rows = []
    for q, job in _failed_jobs(_queues(connection, settings.keys, queue)):
        failure = failure_of(connection, job)
        rows.append(
            (job.id, q.name, _event_key(job), failure.when, failure.happened, failure.error)
        )
    if not rows:
        click.echo("No failed jobs.")
        return
    header = ("JOB ID", "QUEUE", "EVENT KEY", "FAILED AT", "WHAT HAPPENED", "ERROR")
    click.echo("\n".join(table(header, rows)))
    click.echo(
        f"\n{len(rows)} failed job(s): they are not retried any more. Details: wabahooks failed "
        "show ID. Once the cause is fixed: wabahooks failed requeue ID... | --all"
    )


@failed.command()
@click.argument("job_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--all", "all_", is_flag=True, help="Requeue every failed job (of --queue, if given)."
)
@click.option("--queue", type=QUEUE_CHOICE, help="With --all: only this queue [default: all].")
def requeue(job_ids: tuple[str, ...], all_: bool, queue: str | None) -> None:
    """Put failed jobs back into their conversation's chain, with a fresh set of attempts.

    A requeued event runs after the events of its conversation received before
    the requeue (its failure released them), and before those received after.
    """
    from workers.rqstate import requeue_failed

    if bool(job_ids) == all_:
        raise click.UsageError(
            "name the job ids to requeue (see `wabahooks failed list`), or pass --all, not both"
        )
    if queue and not all_:
        raise click.UsageError("--queue goes with --all; job ids already say their queue")
    settings = settings_or_exit()
    connection = connect(settings)
    queues = _queues(connection, settings.keys, queue)
    targets: list[tuple[str | None, str]]
    if all_:
        targets = [(q.name, job.id) for q, job in _failed_jobs(queues)]
    else:
        targets = [(_origin(connection, job_id), job_id) for job_id in job_ids]
    ours = {q.name for q in queues}
    errors = 0
    for origin, job_id in targets:
        requeued = requeue_failed(connection, origin, job_id) if origin in ours else None
        if requeued is None or requeued.status == "refused":
            why = f" (it is {requeued.why})" if requeued is not None else ""
            click.echo(f"wabahooks: {job_id} is not a failed wabahooks job{why}; skipped", err=True)
            errors += 1
            continue
        if requeued.behind is not None:
            where = f"behind {requeued.behind}, its conversation's latest event"
        else:
            where = "queued"
        click.echo(f"requeued {job_id} on {origin}, {where}")
    click.echo(f"Requeued {len(targets) - errors} job(s).")
    if errors:
        sys.exit(1)


def _origin(connection: redis.Redis, job_id: str) -> str | None:
    origin = connection.hget(Job.key_for(job_id), "origin")
    return origin.decode() if isinstance(origin, bytes) else None


@failed.command()
@click.option("--queue", type=QUEUE_CHOICE, help="Only this queue [default: all].")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str | None, yes: bool) -> None:
    """Delete failed jobs for good (their events stay claimed: a portal retry is a duplicate)."""
    settings = settings_or_exit()
    connection = connect(settings)
    queues = _queues(connection, settings.keys, queue)
    registries = [FailedJobRegistry(queue=q) for q in queues]
    count = sum(len(registry.get_job_ids()) for registry in registries)
    if not count:
        click.echo("No failed jobs.")
        return
    where = ", ".join(q.name for q in queues)
    if not yes:
        click.confirm(f"Delete {count} failed job(s) from {where} for good?", abort=True)
    for registry in registries:
        for job_id in registry.get_job_ids():
            with suppress(NoSuchJobError):  # only its registry entry is left
                Job.fetch(job_id, connection=connection, serializer=JSONSerializer).delete()
            registry.remove(job_id)
    click.echo(f"Purged {count} failed job(s).")


def _add_show() -> None:
    from workers.failedshow import show

    failed.add_command(show)


_add_show()
