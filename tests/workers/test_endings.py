"""The endings the engine makes itself (``workers.endings.engine_ending``): what is retried
(a timeout, Redis lost or failing over), what fails, and an annotation that fails does not
stop the job from ending."""

from __future__ import annotations

import pytest
import redis.exceptions

from workers.endings import engine_ending
from workers.jobstate import Ending, StartedJob


def started(attempt: int) -> StartedJob:
    fields = {b"origin": b"wabahooks:messages", b"timeout": b"7"}
    return StartedJob("job1", "exec1", attempt, fields, started=0.0)


def test_a_timeout_is_retried_until_the_last_attempt() -> None:
    retried = engine_ending(started(1), TimeoutError(), max_attempts=3)
    last = engine_ending(started(3), TimeoutError(), max_attempts=3)

    assert retried.outcome == "retry" and retried.delay >= 1
    assert "JobTimeout: the job ran longer than its timeout (7 s)" in retried.error
    assert last.outcome == "failed" and last.error == retried.error


def test_redis_lost_mid_job_is_retried() -> None:
    ending = engine_ending(started(1), redis.exceptions.ConnectionError("gone"), max_attempts=3)

    assert ending.outcome == "retry" and "Redis unavailable during the job" in ending.error


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.MasterDownError("Link with MASTER is down"),
        redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"),
    ],
    ids=["READONLY", "MASTERDOWN", "TRYAGAIN"],
)
def test_a_failover_mid_job_is_retried_not_failed(error: redis.exceptions.RedisError) -> None:
    ending = engine_ending(started(1), error, max_attempts=3)

    assert ending.outcome == "retry" and "Redis unavailable during the job" in ending.error


def test_a_bug_of_ours_fails_the_job_at_once_with_its_traceback() -> None:
    try:
        raise KeyError("oops")
    except KeyError as exc:
        ending = engine_ending(started(1), exc, max_attempts=3)

    assert ending.outcome == "failed"
    assert "Traceback" in ending.error and "KeyError: 'oops'" in ending.error


def test_the_annotation_is_applied_and_its_failure_does_not_lose_the_ending() -> None:
    def annotate(ending: Ending) -> Ending:
        return Ending(ending.job, ending.outcome, ending.error, ending.delay, archive=b"entry")

    def broken(ending: Ending) -> Ending:
        raise ValueError("the archive could not encode it")

    assert engine_ending(started(1), TimeoutError(), 3, annotate).archive == b"entry"
    plain = engine_ending(started(1), TimeoutError(), 3, broken)
    assert plain.outcome == "retry" and plain.archive == b""
