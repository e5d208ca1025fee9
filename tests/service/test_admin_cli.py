"""`wabahooks status`, `check`, `webhook …` and `forget` against real Valkey and the simulator."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rq import Queue, Worker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from service.cli import main
from service.cli.forget import wamid_phone
from service.portal.ratelimit import RateLimiter
from service.samples import new_message_id
from service.sim.app import create_sim_app
from service.sim.config import SimConfig
from tests.support.bredis import BytesRedis
from tests.support.portal import serve
from tests.support.receiver import SECRET, Receiver

ROOT = Path(__file__).resolve().parents[2]
ANN, BOB = "919876543210", "447700900123"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """Only the settings a test gives; Redis is the session's Valkey (AOF on, noeviction)."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "WABA_WEBHOOK_SECRET",
        "WABA_API_URL",
        "WABA_API_KEY",
        "WABA_API_RATE",
        "WABAHOOKS_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


@pytest.fixture
def sim() -> Iterator[str]:
    with serve(create_sim_app(SimConfig(allow_insecure_webhooks=True, status_delay=0.0))) as url:
        yield url


@pytest.fixture
def portal(sim: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """WABA_API_URL/WABA_API_KEY pointing at the simulator."""
    monkeypatch.setenv("WABA_API_URL", f"{sim}/api/v1")
    monkeypatch.setenv("WABA_API_KEY", "sim-key")
    return sim


# -- status --------------------------------------------------------------------------------


def test_status_shows_queue_depths_workers_and_failed(receiver: Receiver, r: BytesRedis) -> None:
    cli("trigger", "message", "--url", receiver.webhook_url, "--secret", SECRET)
    cli("trigger", "test", "--url", receiver.webhook_url, "--secret", SECRET)
    statuses = Queue("wabahooks:statuses", connection=r, serializer=JSONSerializer)
    worker = Worker([statuses], connection=r, name="w-statuses")
    worker.register_birth()
    worker.set_state("idle")

    result = cli("status")

    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    assert rows["QUEUE"] == ["QUEUED", "DEFERRED", "SCHEDULED", "STARTED", "FAILED", "FINISHED"]
    assert rows["wabahooks:messages"] == ["1", "0", "0", "0", "0", "0"]
    assert rows["wabahooks:other"] == ["1", "0", "0", "0", "0", "0"]
    assert rows["w-statuses"][:2] == ["wabahooks:statuses", "idle"]
    assert "0 failed job(s)." in result.stdout
    assert "0 unparsed signed body(ies) kept raw" in result.stdout
    assert "Redis memory: used " in result.stdout and "admitting events" in result.stdout
    worker.register_death()


def test_status_shows_the_shared_portal_send_rate(
    r: BytesRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli("status")
    assert "portal send rate: 80/s of 80/s (WABA_API_RATE)" in result.stdout.splitlines()

    monkeypatch.setenv("WABA_API_RATE", "20")
    RateLimiter(r, rate=20).hold_off(30)  # a worker saw a 429 with Retry-After: 30
    [line] = [x for x in cli("status").stdout.splitlines() if x.startswith("portal send rate")]
    assert line.startswith("portal send rate: 10/s of 20/s (WABA_API_RATE), climbing back")
    assert "; every call held off 29." in line or "; every call held off 30.0" in line


def test_status_without_redis_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL")

    result = cli("status")

    assert result.exit_code == 2
    assert "REDIS_URL is not set" in result.stderr


# -- check ---------------------------------------------------------------------------------


def levels(result: Result) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if line}


def test_check_passes_on_a_good_configuration(portal: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = cli("webhook", "set", "https://hooks.example.com/webhook").stdout
    portal_secret = secret.split("WABA_WEBHOOK_SECRET=")[1].split()[0]
    monkeypatch.setenv("WABA_WEBHOOK_SECRET", f"{portal_secret},old-one")
    monkeypatch.setenv("WABAHOOKS_BUILTINS", "mark_read")  # workers with something to run

    result = cli("check")

    assert result.exit_code == 0, result.output
    assert levels(result) == {
        **{
            name: "ok"
            for name in (
                "settings",
                "secret",
                "handlers",
                "redis",
                "version",
                "aof",
                "maxmemory",
                "portal",
                "webhook",
            )
        },
        "memory": "warn",  # the test server has no maxmemory: no high-water mark
    }
    assert "no maxmemory" in result.stdout


def test_check_fails_with_reasons(
    r: BytesRedis, portal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WABA_API_KEY", "wrong-key")
    monkeypatch.setenv("WABAHOOKS_DEDUPE_TTL", "soon")
    monkeypatch.setenv("WABAHOOKS_CONFIG", "workers.toml")
    Path("workers.toml").write_text("[handlers.mark_raed]\n")  # a typo: the workers would refuse
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = cli("check")
    finally:
        r.config_set("maxmemory-policy", "noeviction")

    assert result.exit_code == 1
    found = levels(result)
    assert found["settings"] == found["secret"] == found["maxmemory"] == "fail"
    assert found["portal"] == found["handlers"] == "fail"
    assert "handlers.mark_raed: no built-in or loaded router is named" in result.stdout
    assert found["redis"] == found["aof"] == "ok"
    assert "WABAHOOKS_DEDUPE_TTL" in result.stdout
    assert "Invalid API key" in result.stdout
    assert "allkeys-lru" in result.stdout
    assert "5 check(s) failed." in result.stderr


def test_check_reports_an_unreachable_redis_and_a_portal_secret_we_would_refuse(
    portal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("webhook", "set", "https://hooks.example.com/webhook")
    monkeypatch.setenv("WABA_WEBHOOK_SECRET", "not-the-portals")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")

    result = cli("check")

    assert result.exit_code == 1
    assert levels(result)["redis"] == "fail"
    assert levels(result)["signing"] == "fail"
    assert "hunter2" not in result.output


# -- webhook -------------------------------------------------------------------------------


def test_webhook_set_get_test_delete(
    portal: str, start_receiver: Callable[..., Receiver], r: BytesRedis
) -> None:
    result = cli("webhook", "get")
    assert result.exit_code == 0, result.output
    assert "disabled" in result.stdout

    plain = cli("webhook", "set", "http://hooks.example.com/webhook")  # not HTTPS
    assert plain.exit_code == 1
    assert "HTTPS" in plain.stderr

    # The receiver's URL is plain-HTTP loopback: the simulator allows it in development.
    receiver = start_receiver(secrets=("placeholder",))
    result = cli("webhook", "set", receiver.webhook_url, "--events", "messages")
    assert result.exit_code == 0, result.output
    secret = result.stdout.split("WABA_WEBHOOK_SECRET=")[1].split()[0]
    assert "events   messages" in result.stdout

    got = cli("webhook", "get")
    assert secret not in got.stdout  # masked unless asked
    assert secret in cli("webhook", "get", "--show-secret").stdout

    refused = cli("webhook", "test")  # the receiver does not know the secret yet
    assert refused.exit_code == 1
    assert "answer    401" in refused.stdout
    assert "WABA_WEBHOOK_SECRET" in refused.stderr

    receiver = start_receiver(secrets=(secret,))
    cli("webhook", "set", receiver.webhook_url)
    tested = cli("webhook", "test")
    assert tested.exit_code == 0, tested.output
    assert "answer    200" in tested.stdout
    assert Queue("wabahooks:other", connection=r).count == 1

    assert cli("webhook", "delete", stdin="n\n").exit_code == 1  # asked, and declined
    assert cli("webhook", "delete", "--yes").exit_code == 0
    assert "url      (none)" in cli("webhook", "get").stdout


def test_webhook_set_explains_rotation(portal: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WABA_WEBHOOK_SECRET", "the-old-secret")

    result = cli("webhook", "set", "https://hooks.example.com/webhook")

    new = result.stdout.split("WABA_WEBHOOK_SECRET=")[1].split()[0]
    assert f"WABA_WEBHOOK_SECRET={new},the-old-secret" in result.stdout


def test_webhook_without_the_portal_configured_names_the_variable() -> None:
    result = cli("webhook", "get")

    assert result.exit_code == 2
    assert "WABA_API_URL is not set" in result.stderr


# -- forget --------------------------------------------------------------------------------


def fail_messages(redis_url: str, tmp_path: Path) -> None:
    """A real burst worker with no portal configured: mark-read fails every message."""
    config = tmp_path / "mark-read.toml"
    config.write_text("[handlers.mark_read]\n", encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": redis_url,
        "WABAHOOKS_CONFIG": str(config),
        "WABAHOOKS_LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "-m", "service", "worker", "--queue", "messages", "--burst"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_forget_removes_exactly_that_contacts_data(
    receiver: Receiver, r: BytesRedis, redis_url: str, tmp_path: Path
) -> None:
    for phone in (ANN, BOB):
        cli(
            "trigger", "message", "--from", phone, "--url", receiver.webhook_url, "--secret", SECRET
        )
    fail_messages(redis_url, tmp_path)
    registry = FailedJobRegistry("wabahooks:messages", connection=r, serializer=JSONSerializer)
    failed = {
        job.kwargs["conversation"]: job.id
        for job in Queue("wabahooks:messages", connection=r).job_class.fetch_many(
            registry.get_job_ids(), r, serializer=JSONSerializer
        )
        if job
    }
    assert set(failed) == {ANN, BOB}
    r.hset(f"rq:job:{failed[ANN]}", "wh:s:mark_read:mark_read#1", "{}")  # a ledger entry
    ann_sent, bob_sent = "wamid.opaque-ann-1", new_message_id(BOB)
    ann_other = new_message_id(ANN)  # not in the sent set: found by the number it encodes
    for phone, sent in ((ANN, ann_sent), (BOB, bob_sent)):
        r.hset(f"wabahooks:store:{phone}", "last", '"hi"')
        r.sadd(f"wabahooks:sent:{phone}", sent)
        r.hset(f"wabahooks:store:{sent}", "status", '{"status": "read"}')
        r.set(f"wabahooks:tail:status:{sent}", "job")
    r.hset(f"wabahooks:store:{ann_other}", "status", '{"status": "failed"}')
    bob_keys = {k for k in r.keys("wabahooks:*") if BOB.encode() in k or bob_sent.encode() in k}

    result = cli("forget", ANN, "--yes")

    assert result.exit_code == 0, result.output
    for line in (
        "removed 1 conversation state",
        "removed 1 conversation tail",
        "removed 1 sent-message id set",
        "removed 2 message status records",
        "removed 1 message status tail",
        "removed 1 failed job",
    ):
        assert line in result.stdout
    assert "scanning failed jobs of wabahooks:messages: 2/2" in result.stderr
    left = {k.decode() for k in r.keys("wabahooks:*") if not k.startswith(b"wabahooks:claim:")}
    assert not [k for k in left if ANN in k or "ann" in k or ann_other in k]
    assert not r.exists(f"rq:job:{failed[ANN]}")
    assert registry.get_job_ids() == [failed[BOB]]
    assert bob_keys <= set(r.keys("wabahooks:*"))


def test_forget_asks_first_and_checks_the_number(r: BytesRedis) -> None:
    r.hset(f"wabahooks:store:{ANN}", "k", "1")

    declined = cli("forget", ANN, stdin="n\n")
    bad = cli("forget", "+44 (0)20", "--yes")
    nothing = cli("forget", BOB, "--yes")

    assert declined.exit_code == 1 and r.exists(f"wabahooks:store:{ANN}")
    assert bad.exit_code == 2 and "8 to 15 digits" in bad.stderr
    assert nothing.exit_code == 0 and "Nothing stored" in nothing.stdout
    assert cli("forget", f"+{ANN}", "--yes").exit_code == 0
    assert not r.exists(f"wabahooks:store:{ANN}")


def test_a_wamid_yields_the_number_it_encodes() -> None:
    assert ANN in wamid_phone(new_message_id(ANN))
    assert "919876543210" in wamid_phone("wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSM0VCMDA=")
    assert wamid_phone("not-a-wamid") == set()
