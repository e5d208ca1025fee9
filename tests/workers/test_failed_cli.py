"""`wabahooks failed list|requeue|purge` and the worker command's refusals, via `wabahooks`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner, Result
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from service.cli import main
from tests.support.bredis import BytesRedis
from tests.support.workers import PREFIX, ROOT, drain, worker_env
from tests.workers import jobs


def run(redis_url: str | None, *args: str, input: str | None = None) -> Result:
    env = {"REDIS_URL": redis_url, "WABA_WEBHOOK_SECRET": None, "WABAHOOKS_QUEUE_PREFIX": None}
    return CliRunner().invoke(main, list(args), env=env, input=input)


def fail_jobs(r: BytesRedis, name: str, *event_keys: str) -> list[str]:
    """Enqueue failing jobs on queue ``name`` and run them into its failed registry."""
    q = Queue(PREFIX + name, connection=r, serializer=JSONSerializer)
    ids = [q.enqueue(jobs.fail, "boom: " + key, event_key=key).id for key in event_keys]
    drain(r, q.name)
    return ids


def failed_ids(r: BytesRedis, name: str) -> list[str]:
    return FailedJobRegistry(PREFIX + name, connection=r).get_job_ids()


def test_the_queue_side_commands_join_wabahooks_without_service_importing_workers() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "worker" in result.output and "failed" in result.output
    probe = "import sys, service.cli; print(any(m.split('.')[0] == 'workers' for m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True)
    assert imported.stdout.strip() == b"False", imported.stderr


def test_list_says_when_there_is_nothing(redis_url: str) -> None:
    result = run(redis_url, "failed", "list")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "No failed jobs."


def test_list_shows_id_queue_event_key_time_and_the_error(redis_url: str, r: BytesRedis) -> None:
    [m1] = fail_jobs(r, "messages", "message:wamid.A")
    [s1] = fail_jobs(r, "statuses", "status:wamid.B:read")

    result = run(redis_url, "failed", "list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        *("JOB", "ID", "QUEUE", "EVENT", "KEY", "FAILED", "AT", "WHAT", "HAPPENED", "ERROR")
    ]
    row = next(line for line in lines if line.startswith(m1))
    assert PREFIX + "messages" in row and "message:wamid.A" in row and " UTC " in row
    assert row.endswith("RuntimeError: boom: message:wamid.A")
    assert any(line.startswith(s1) for line in lines)
    only = run(redis_url, "failed", "list", "--queue", "statuses")
    assert s1 in only.output and m1 not in only.output


def test_requeue_puts_named_jobs_back_with_fresh_retries(redis_url: str, r: BytesRedis) -> None:
    first, second = fail_jobs(r, "messages", "message:wamid.A", "message:wamid.B")
    r.hset(Job.key_for(first), mapping={"number_of_retries": 3, "wh:attempts": 5})

    result = run(redis_url, "failed", "requeue", first)

    assert result.exit_code == 0, result.output
    assert f"requeued {first} on {PREFIX}messages, queued" in result.output  # no conversation
    job = Job.fetch(first, connection=r, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.QUEUED and job.number_of_retries is None
    assert r.hget(Job.key_for(first), "wh:attempts") == b"0"
    assert failed_ids(r, "messages") == [second]


def test_requeue_all_of_one_queue(redis_url: str, r: BytesRedis) -> None:
    messages = fail_jobs(r, "messages", "message:wamid.A", "message:wamid.B")
    statuses = fail_jobs(r, "statuses", "status:wamid.C:read")

    result = run(redis_url, "failed", "requeue", "--all", "--queue", "messages")

    assert result.exit_code == 0, result.output
    assert "Requeued 2 job(s)." in result.output
    assert sorted(Queue(PREFIX + "messages", connection=r).job_ids) == sorted(messages)
    assert failed_ids(r, "statuses") == statuses


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "name the job ids to requeue"),
        (("abc", "--all"), "or pass --all, not both"),
        (("abc", "--queue", "messages"), "--queue goes with --all"),
    ],
)
def test_requeue_explains_a_wrong_call(redis_url: str, args: tuple[str, ...], says: str) -> None:
    result = run(redis_url, "failed", "requeue", *args)
    assert result.exit_code == 2
    assert says in result.output


def test_requeue_of_an_unknown_id_says_so_and_fails(redis_url: str, r: BytesRedis) -> None:
    [known] = fail_jobs(r, "other", "test:t1")

    result = run(redis_url, "failed", "requeue", "no-such-job", known)

    assert result.exit_code == 1
    assert "no-such-job is not a failed wabahooks job" in result.output
    assert "Requeued 1 job(s)." in result.output


def test_purge_asks_first_and_deletes_for_good(redis_url: str, r: BytesRedis) -> None:
    messages = fail_jobs(r, "messages", "message:wamid.A")
    statuses = fail_jobs(r, "statuses", "status:wamid.B:read")

    declined = run(redis_url, "failed", "purge", input="n\n")
    assert declined.exit_code == 1 and "Delete 2 failed job(s)" in declined.output
    assert failed_ids(r, "messages") == messages

    result = run(redis_url, "failed", "purge", "--queue", "messages", "--yes")

    assert result.exit_code == 0, result.output
    assert "Purged 1 failed job(s)." in result.output
    assert failed_ids(r, "messages") == [] and not r.exists(Job.key_for(messages[0]))
    assert failed_ids(r, "statuses") == statuses


def test_failed_without_redis_url_names_the_variable() -> None:
    result = run(None, "failed", "list")
    assert result.exit_code == 2
    assert "REDIS_URL is not set" in result.output


def test_worker_refuses_two_queues_with_a_clear_error(redis_url: str) -> None:
    result = run(redis_url, "worker", "--queue", "messages", "--queue", "statuses")
    assert result.exit_code == 2
    assert "one queue per worker process" in result.output


def test_worker_needs_redis_url_but_not_the_webhook_secret(redis_url: str) -> None:
    missing = run(None, "worker", "--burst")
    assert missing.exit_code == 2 and "REDIS_URL is not set" in missing.output

    # A real process: the worker command configures logging and signal handlers.
    burst = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst"],
        cwd=ROOT,
        env=worker_env(redis_url),
        capture_output=True,
        text=True,
    )
    assert burst.returncode == 0, burst.stderr
    assert f"{PREFIX}messages" in burst.stdout  # the default queue


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--concurrency", "0"], {}, "--concurrency"),
        ([], {"WABAHOOKS_CONCURRENCY": "lots"}, "WABAHOOKS_CONCURRENCY must be a whole number"),
        ([], {"WABAHOOKS_LEASE": "1"}, "WABAHOOKS_LEASE must be a whole number >= 5"),
        ([], {"WABAHOOKS_SYNC_THREADS": "0"}, "WABAHOOKS_SYNC_THREADS"),
    ],
)
def test_worker_refuses_bad_engine_settings_in_one_line(
    redis_url: str, args: list[str], env: dict[str, str], says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst", *args],
        cwd=ROOT,
        env=worker_env(redis_url, **env),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr
