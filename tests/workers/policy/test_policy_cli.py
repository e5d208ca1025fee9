"""`wabahooks optout list`, `wabahooks handover` and `forget`'s keyed hash, on real Valkey."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from service.cli import main
from service.policystore import PolicyKeys, hash_number, optout_entries
from tests.support.bredis import BytesRedis
from tests.support.loop import running_loop
from tests.support.portal import API_KEY
from tests.workers.policy.support import send_from_portal_inbox
from tests.workers.policy.test_optout_end_to_end import CONFIG
from tests.workers.test_end_to_end import sent_texts
from workers.policy.config import STOP_REPLY

ANN = "919876543210"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("WABAHOOKS_OPTOUT_KEY", raising=False)
    config = tmp_path / "wabahooks.toml"
    config.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("WABAHOOKS_CONFIG", str(config))
    return config


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def said(result: Result) -> str:
    """What the command printed, without the log lines that the loop's receiver and workers
    (threads of this process) printed to the same captured stdout meanwhile."""
    lines = result.stdout.splitlines(keepends=True)
    return "".join(line for line in lines if not re.match(r"\d{4}-\d\d-\d\d \d\d:", line))


def test_optout_list_masks_numbers_unless_asked(redis_url: str) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("STOP")
        loop.work()

    masked, full = cli("optout", "list"), cli("optout", "list", "--full")

    assert (
        masked.exit_code == 0 and "+********3210\t" in masked.stdout and "\tstop" in masked.stdout
    )
    assert ANN not in masked.stdout
    assert f"+{ANN}\t" in full.stdout


def test_forget_keeps_the_keyed_hash_so_the_contact_stays_opted_out(
    redis_url: str, r: BytesRedis
) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("STOP")
        loop.work()
        forgotten = cli("forget", ANN, "--yes")
        listed = cli("optout", "list", "--full")
        loop.inbound("hello again")  # a forgotten contact who opted out gets no reply
        loop.work()
        texts = sent_texts(loop.history())
    entries = optout_entries(r, PolicyKeys())

    assert forgotten.exit_code == 0, forgotten.output
    assert "opt-out number (its keyed hash kept)" in forgotten.stdout
    assert "(forgotten)" in listed.stdout and ANN not in listed.stdout
    assert [e.phone for e in entries] == [None]
    assert ANN.encode() not in b"".join(r.hvals(PolicyKeys().optout))
    assert texts == [STOP_REPLY]


def test_forget_drop_optout_removes_the_entry(redis_url: str, r: BytesRedis) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("STOP")
        loop.work()
    result = cli("forget", ANN, "--yes", "--drop-optout")

    assert result.exit_code == 0
    assert optout_entries(r, PolicyKeys()) == []


def test_handover_cli_pauses_and_resumes_auto_reply(redis_url: str) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        on = cli("handover", f"+{ANN}", "--on")
        loop.inbound("first")
        loop.work()
        paused = sent_texts(loop.history())
        off = cli("handover", ANN, "--off")
        loop.inbound("second")
        loop.work()
        resumed = sent_texts(loop.history())

    assert on.exit_code == 0 and off.exit_code == 0
    assert paused == []
    assert resumed == ["Thanks, we got it."]


def test_handover_cli_without_policy_exits_2(env: Path) -> None:
    env.write_text("[handlers.auto_reply]\ndefault = 'hi'\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["handover", ANN, "--on"])

    assert result.exit_code == 2
    assert "add a [policy] table" in result.stderr


def test_handover_cli_refuses_a_bad_number() -> None:
    result = CliRunner().invoke(main, ["handover", "12ab", "--on"])

    assert result.exit_code == 2
    assert "PHONE" in result.output


def test_the_configured_key_hashes_the_list_and_none_is_kept_in_redis(
    redis_url: str, r: BytesRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WABAHOOKS_OPTOUT_KEY", "a-key-kept-elsewhere")
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("STOP")
        loop.work()

    assert r.exists(PolicyKeys().optout_key) == 0
    assert [e.digest for e in optout_entries(r, PolicyKeys())] == [
        hash_number(b"a-key-kept-elsewhere", ANN)
    ]


def test_handover_off_is_not_undone_by_the_humans_earlier_answer(redis_url: str) -> None:
    with running_loop(redis_url, config=CONFIG) as loop:
        loop.inbound("hello")
        loop.work()
        send_from_portal_inbox(loop, ANN, "Hi, Maria here. All sorted!")
        off = cli("handover", ANN, "--off")  # Maria hands the conversation back at once
        loop.inbound("thanks Maria")
        loop.work()
        texts = sent_texts(loop.history())

    assert off.exit_code == 0
    assert texts == ["Thanks, we got it.", "Hi, Maria here. All sorted!", "Thanks, we got it."]


def test_handover_cli_sends_the_configured_notices(
    redis_url: str, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notices = '[policy.handover]\non_notice = "A person will answer."\noff_notice = "Bot again."\n'
    env.write_text(CONFIG.replace("[policy]\n", "[policy]\n" + notices), encoding="utf-8")
    with running_loop(redis_url, config=env.read_text(encoding="utf-8")) as loop:
        monkeypatch.setenv("WABA_API_URL", str(loop.sim.base_url).rstrip("/") + "/api/v1")
        monkeypatch.setenv("WABA_API_KEY", API_KEY)
        unknown = cli("handover", ANN, "--on")  # the contact never wrote: no window
        loop.inbound("hello")
        loop.work()
        on = cli("handover", ANN, "--on")
        quiet = cli("handover", ANN, "--off", "--no-notice")
        off = cli("handover", ANN, "--off")
        texts = sent_texts(loop.history())

    assert "No notice sent: the contact's 24-hour window is closed." in said(unknown)
    assert said(on).endswith("Notice sent.\n") and said(off).endswith("Notice sent.\n")
    assert "Notice" not in said(quiet)
    assert texts == ["A person will answer.", "Bot again."]  # handed over: no auto-reply
