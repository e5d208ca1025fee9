"""Issue 14, item 6: what a user sees of failed jobs, from the console script."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from rq.registry import FailedJobRegistry

from tests.support.bredis import BytesRedis
from tests.support.receiver import SECRET, Receiver
from tests.userpath.support import WABAHOOKS, user_env, wabahooks, write_project

FLAKY = """\
from workers import Context, InboundMessage, Permanent, RetryPolicy, Router

router = Router("flaky")


@router.message()
def first(event: InboundMessage, ctx: Context) -> None:
    ctx.store.set("seen", event.text)


@router.message(text="permanent")
def refuse(event: InboundMessage, ctx: Context) -> None:
    raise Permanent("the order system said no")


@router.message(text="transient", retry=RetryPolicy(max_attempts=2, base=1, cap=1))
def wobble(event: InboundMessage, ctx: Context) -> None:
    raise RuntimeError(f"inventory down for {event.sender}")
"""
PHONE = "919876543210"


def test_failed_list_and_show_say_what_happened_and_what_to_do(
    tmp_path: Path, receiver: Receiver, redis_url: str, r: BytesRedis
) -> None:
    project = write_project(tmp_path / "shop", flaky=FLAKY)
    for text in ("permanent", "transient"):
        sent = wabahooks(
            project,
            *("trigger", "message", "--text", text, "--from", PHONE),
            *("--url", receiver.webhook_url, "--secret", SECRET),
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
    env = user_env(REDIS_URL=redis_url, WABAHOOKS_HANDLERS="myapp.flaky")
    worker = subprocess.Popen(
        [WABAHOOKS, "worker"], cwd=project, env=env, stdout=subprocess.DEVNULL
    )
    try:
        registry = FailedJobRegistry("wabahooks:messages", connection=r)
        deadline = time.monotonic() + 60
        while len(registry.get_job_ids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    listed = wabahooks(project, "failed", "list", REDIS_URL=redis_url)

    assert listed.returncode == 0, listed.stderr
    assert "will be retried" not in listed.stdout
    assert "permanent error, not retried (1 attempt)" in listed.stdout
    assert "gave up after 2 attempts" in listed.stdout
    assert "handler flaky:wobble failed: inventory down for ********3210" in listed.stdout
    assert "failed show ID" in listed.stdout and "failed requeue" in listed.stdout

    transient = next(line.split()[0] for line in listed.stdout.splitlines() if "gave up" in line)
    shown = wabahooks(project, "failed", "show", transient, REDIS_URL=redis_url)

    assert shown.returncode == 0, shown.stderr
    assert PHONE not in shown.stdout and "wamid." not in shown.stdout
    assert f"********{PHONE[-4:]}" in shown.stdout
    assert "gave up after 2 attempts" in shown.stdout
    assert "attempts    2" in shown.stdout
    assert "done        flaky:first" in shown.stdout  # ran on the first attempt, skipped after
    assert '"body": "transient"' in shown.stdout  # the event
    assert "Traceback (most recent call last)" in shown.stdout
    assert f"failed requeue {transient}" in shown.stdout

    unknown = wabahooks(project, "failed", "show", "no-such-job", REDIS_URL=redis_url)
    assert unknown.returncode == 1 and "no job 'no-such-job'" in unknown.stderr
