"""`wabahooks events tail|show` and `wabahooks replay`, on an archive the real loop wrote."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import orjson
import pytest
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.cli import main
from service.logs import IdHasher
from service.signature import verify_raw
from tests.support.bredis import BytesRedis
from tests.support.portal import serve
from tests.support.workers import ROOT, wait_for, worker_env
from tests.workers.example_handlers import router
from tests.workers.test_archive import KEY, LOG_KEY, PHONE, archived_loop, entries
from workers import AsyncContext, InboundMessage, Router


def run(redis_url: str, *args: str, input: str | None = None) -> Result:
    env = {
        "REDIS_URL": redis_url,
        "WABA_WEBHOOK_SECRET": None,
        "WABAHOOKS_LOG_KEY": LOG_KEY,
        "WABAHOOKS_HANDLERS": "tests.workers.example_handlers",
        "WABAHOOKS_CONFIG": "",
        "WABA_API_URL": None,
        "WABA_API_KEY": None,
        "WABAHOOKS_ARCHIVE": None,
    }
    return CliRunner().invoke(main, list(args), env=env, input=input)


def sent_texts(history: dict[str, object]) -> list[str]:
    return [m["message"] for m in history["sent"]]  # type: ignore[attr-defined]


def test_tail_prints_each_new_event_as_it_ends(redis_url: str, r: BytesRedis) -> None:
    env = worker_env(redis_url, WABAHOOKS_LOG_KEY=LOG_KEY)
    command = ["events", "tail", "--json", "--text", "--count", "1", "--kind", "message"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        tail = subprocess.Popen(
            [sys.executable, "-m", "service", *command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
        try:
            # Blocked reading the feed: from now on every event written reaches it.
            wait_for(
                lambda: (
                    any(c.get("cmd") == "xread" for c in r.client_list()) or tail.poll() is not None
                ),
                "tail to wait on the feed",
            )
            with archived_loop(redis_url, router) as loop:
                message_id = loop.inbound("hello tail")
                loop.work()
            tail.wait(timeout=30)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
        out.seek(0)
        lines = out.read().decode().splitlines()
        err.seek(0)
        said = err.read().decode()
    assert tail.returncode == 0, (lines, said)
    assert "Nothing archived yet" in said and "WABAHOOKS_ARCHIVE=on" in said
    [view] = [json.loads(line) for line in lines]
    hasher = IdHasher(KEY)
    assert view["event_key"] == hasher.scrub(f"message:{message_id}")
    assert view["kind"] == "message" and view["outcome"] == "done"
    assert view["contact"] == "********3210" and view["text"] == "hello tail"
    assert view["handlers"][0]["name"] == "example:echo" and view["latency_ms"] > 0
    assert "envelope" not in view and PHONE not in lines[0]


def test_tail_without_colour_when_not_a_terminal_and_filters(redis_url: str) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.inbound("one", sender=PHONE)
        loop.inbound("two", sender="14155550123")
        loop.work()

    mine = run(
        redis_url,
        "events",
        "tail",
        "--last",
        "50",
        "--count",
        "1",
        "--contact",
        PHONE,
        "--kind",
        "message",
    )
    by_handler = run(
        redis_url, "events", "tail", "--last", "50", "--count", "2", "--handler", "example"
    )

    assert mine.exit_code == 0, mine.output
    assert "\x1b[" not in mine.output
    [line] = mine.output.splitlines()
    assert "********3210" in line and "done" in line and "example:echo✓" in line
    assert by_handler.exit_code == 0, by_handler.output
    assert {"********3210", "*******0123"} <= set(by_handler.output.split())


def test_show_by_job_id_message_id_and_phone(redis_url: str, r: BytesRedis) -> None:
    with archived_loop(redis_url, router) as loop:
        message_id = loop.inbound("show me")
        loop.work()
    [entry] = entries(r)

    by_id = run(redis_url, "events", "show", entry["id"])
    by_message = run(redis_url, "events", "show", message_id)
    by_token = run(redis_url, "events", "show", IdHasher(KEY).token(message_id))
    by_phone = run(redis_url, "events", "show", "+" + PHONE)
    as_json = run(redis_url, "events", "show", entry["id"], "--json")
    missing = run(redis_url, "events", "show", "0" * 32)

    for result in (by_id, by_message, by_token):
        assert result.exit_code == 0, result.output
        assert f"job {entry['id']}" in result.output
        assert "example:echo" in result.output and "send_text#1" in result.output
        assert "'show me'" in result.output and "done" in result.output
    assert by_phone.exit_code == 0 and "show me" not in by_phone.output
    assert len([line for line in by_phone.output.splitlines() if " message " in line]) == 1
    assert orjson.loads(as_json.output) == entry
    assert missing.exit_code == 1 and "No archived event" in missing.output


def test_replay_dry_run_shows_what_would_be_sent_and_sends_nothing(
    redis_url: str, r: BytesRedis
) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.inbound("again please")
        loop.work()
        result = run(redis_url, "replay", "--since", "1h", "--kind", "message", "--dry-run")
        loop.work()
        history = loop.history()

    assert result.exit_code == 0, result.output
    assert "would send to ********3210: You said: again please" in result.output
    assert "would mark read wamid~" in result.output  # as the logs print it: it encodes the number
    assert "handler.done" not in result.output  # the handlers' info lines stay out of the report
    assert "1 messages would be sent; nothing was" in result.output
    assert sent_texts(history) == ["You said: again please"]
    assert r.hget("wabahooks:store:" + PHONE, "last") == b'"again please"'
    assert r.llen("rq:queue:wabahooks:messages") == 0


def test_replay_sends_once_per_scope(redis_url: str, r: BytesRedis) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.inbound("replay me")
        loop.work()
        refused = run(redis_url, "replay", "--since", "1h", "--kind", "message", input="n\n")
        first = run(
            redis_url,
            "replay",
            "--since",
            "1h",
            "--kind",
            "message",
            "--scope",
            "fix1",
            input="y\n",
        )
        loop.work()
        second = run(
            redis_url, "replay", "--since", "1h", "--kind", "message", "--scope", "fix1", "--yes"
        )
        loop.work()
        history = loop.history()

    assert refused.exit_code == 1 and "1 events" in refused.output
    assert first.exit_code == 0, first.output
    assert "scope fix1: 1 jobs enqueued, 0 already replayed" in first.output
    assert second.exit_code == 0 and "0 jobs enqueued, 1 already replayed" in second.output
    assert sent_texts(history) == ["You said: replay me", "You said: replay me"]
    replays = [e for e in entries(r) if e["replay"]]
    [original] = [e for e in entries(r) if not e["replay"]]
    assert len(replays) == 1 and replays[0]["replay"]["of"] == original["id"]
    assert replays[0]["outcome"] == "done" and replays[0]["event_key"] == original["event_key"]


@pytest.fixture
def target() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append((await request.body(), dict(request.headers)))
        return JSONResponse({"ok": True})

    with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        yield url + "/hook", received


def test_replay_to_a_url_posts_signed_envelopes(
    redis_url: str, r: BytesRedis, target: tuple[str, list[tuple[bytes, dict[str, str]]]]
) -> None:
    url, received = target
    with archived_loop(redis_url, router) as loop:
        loop.inbound("forward me")
        loop.work()
    [entry] = entries(r)

    missing = run(redis_url, "replay", "--since", "1h", "--kind", "message", "--to", url)
    result = run(
        redis_url,
        "replay",
        "--since",
        "1h",
        "--kind",
        "message",
        "--to",
        url,
        "--secret",
        "target-secret",
        "--yes",
    )

    assert missing.exit_code == 2 and "--secret" in missing.output
    assert result.exit_code == 0, result.output
    assert "1 accepted" in result.output
    [(body, headers)] = received
    assert verify_raw(body, headers["x-webhook-signature"], ["target-secret"])
    assert json.loads(body) == entry["envelope"]
    assert headers["x-wabahooks-event-key"] == entry["event_key"]


def test_replay_refuses_what_it_cannot_do(redis_url: str) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.inbound("hello")
        loop.work()

    bad_time = run(redis_url, "replay", "--since", "yesterday")
    bad_handler = run(redis_url, "replay", "--since", "1h", "--dry-run", "--handler", "nope")
    only_echo = run(redis_url, "replay", "--since", "1h", "--dry-run", "--handler", "example")
    nothing = run(redis_url, "replay", "--since", "2026-01-01", "--until", "2026-01-02")
    no_handlers = CliRunner().invoke(
        main,
        ["replay", "--since", "1h", "--dry-run"],
        env={"REDIS_URL": redis_url, "WABAHOOKS_HANDLERS": None, "WABAHOOKS_CONFIG": ""},
    )

    assert bad_time.exit_code == 2 and "give a duration ago (30m, 2h, 1d)" in bad_time.output
    assert bad_handler.exit_code == 2 and "no handler named nope" in bad_handler.output
    assert "example:echo" in bad_handler.output
    assert only_echo.exit_code == 0 and "would send to" in only_echo.output
    assert nothing.exit_code == 0 and "No archived events match" in nothing.output
    assert no_handlers.exit_code == 2 and "no handlers are configured here" in no_handlers.output


def test_replay_through_one_handler_runs_only_that_one(redis_url: str, r: BytesRedis) -> None:
    greeter = Router("greeter")

    @greeter.message(replies=True)
    async def greet(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, "Welcome!")

    with archived_loop(redis_url, greeter, router) as loop:
        loop.inbound("hi")
        loop.work()
        result = run(
            redis_url,
            "replay",
            "--since",
            "1h",
            "--kind",
            "message",
            "--handler",
            "greeter",
            "--yes",
        )
        loop.work()
        history = loop.history()

    assert result.exit_code == 0, result.output
    assert sent_texts(history) == ["Welcome!", "You said: hi", "Welcome!"]
    [replayed] = [e for e in entries(r) if e["replay"]]
    assert [h["name"].split(":")[0] for h in replayed["handlers"]] == ["greeter"]
    assert replayed["replay"]["handlers"] == ["greeter"]


def test_show_says_where_an_event_not_yet_archived_is(redis_url: str, r: BytesRedis) -> None:
    with archived_loop(redis_url, router) as loop:
        message_id = loop.inbound("still queued")
        job_id = r.get(f"wabahooks:claim:message:{message_id}").decode()  # type: ignore[union-attr]
        result = run(redis_url, "events", "show", message_id)

    assert result.exit_code == 1
    assert result.output.strip() == f"job {job_id} is queued: archived when it ends"


def _factory_router() -> Router:
    """A router whose handler is defined in a factory, as the built-ins' are."""
    built = Router("greeter")

    @built.message(type="text", replies=True)
    async def greet(event: InboundMessage, ctx: AsyncContext) -> None:
        await ctx.portal.send_text(event.sender, "Hi")

    return built


def test_events_name_handlers_as_logs_do_not_by_their_factory(redis_url: str) -> None:
    """`greeter:greet`, not `greeter:_factory_router.<locals>.greet` (the ledger's key)."""
    with archived_loop(redis_url, _factory_router()) as loop:
        loop.inbound("hi", sender=PHONE)
        loop.work()

    tail = run(
        redis_url, "events", "tail", "--last", "5", "--count", "1", "--kind", "message", "--json"
    )
    by_label = run(
        redis_url, "events", "tail", "--last", "5", "--count", "1", "--handler", "greeter:greet"
    )
    shown = run(redis_url, "events", "show", PHONE)

    assert tail.exit_code == 0, tail.output
    assert json.loads(tail.output)["handlers"][0]["name"] == "greeter:greet"
    assert by_label.exit_code == 0 and "greeter:greet✓" in by_label.output, by_label.output
    assert shown.exit_code == 0, shown.output
    assert "<locals>" not in tail.output + by_label.output + shown.output
    assert "greeter:greet" in shown.output


def test_tail_starts_with_the_latest_events_as_tail_does(redis_url: str) -> None:
    with archived_loop(redis_url, router) as loop:
        loop.inbound("earlier", sender=PHONE)
        loop.work()

    past = run(redis_url, "events", "tail", "--count", "1", "--kind", "message", "--text")

    assert past.exit_code == 0, past.output
    assert "earlier" in past.output  # written before tail started
