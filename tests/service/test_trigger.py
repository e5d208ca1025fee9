"""`wabahooks trigger`: signed events reach a real receiver as jobs; through the simulator too."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from rq import Queue
from rq.registry import DeferredJobRegistry
from rq.serializers import JSONSerializer

from service.cli import main
from service.samples import new_message_id, out_of_order
from service.sim.app import create_sim_app
from service.sim.config import SimConfig
from tests.support.bredis import BytesRedis
from tests.support.portal import drain, serve
from tests.support.receiver import SECRET, Receiver


@pytest.fixture(autouse=True)
def no_dev_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where no `wabahooks dev` state exists, with no WABA_* settings."""
    monkeypatch.chdir(tmp_path)
    for name in ("WABA_WEBHOOK_SECRET", "WABA_API_URL", "WABA_API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


def trigger(*args: str) -> Result:
    return CliRunner().invoke(main, ["trigger", *args], catch_exceptions=False)


def jobs(r: BytesRedis, queue: str) -> list[dict[str, Any]]:
    """The kwargs of the queue's jobs, queued or waiting for their conversation's previous."""
    q = Queue(f"wabahooks:{queue}", connection=r, serializer=JSONSerializer)
    ids = q.get_job_ids() + DeferredJobRegistry(queue=q).get_job_ids()
    return [job.kwargs for job in q.job_class.fetch_many(ids, r, serializer=JSONSerializer) if job]


def test_a_text_message_becomes_one_job(receiver: Receiver, r: BytesRedis) -> None:
    result = trigger(
        "message",
        "--text",
        "hi",
        "--from",
        "441234567890",
        "--name",
        "Ann",
        "--url",
        receiver.webhook_url,
        "--secret",
        SECRET,
    )

    assert result.exit_code == 0, result.output
    assert '→ 200 {"received":true}' in result.stdout
    [job] = jobs(r, "messages")
    data = job["envelope"]["data"]
    assert (data["from"], data["contact"]["name"], data["text"]) == (
        "441234567890",
        "Ann",
        {"body": "hi"},
    )
    assert data["messageId"].startswith("wamid.")
    assert job["conversation"] == "441234567890"


@pytest.mark.parametrize(
    ("kind", "field", "expected"),
    [
        ("image", "caption", "look"),
        ("button", "text", "look"),
        ("location", "name", "look"),
    ],
)
def test_other_message_types_carry_their_object(
    receiver: Receiver, r: BytesRedis, kind: str, field: str, expected: str
) -> None:
    result = trigger(
        "message",
        "--type",
        kind,
        "--text",
        "look",
        "--url",
        receiver.webhook_url,
        "--secret",
        SECRET,
    )

    assert result.exit_code == 0, result.output
    [job] = jobs(r, "messages")
    assert job["envelope"]["data"]["type"] == kind
    assert job["envelope"]["data"][kind][field] == expected


def test_duplicates_are_answered_as_such_and_make_one_job(
    receiver: Receiver, r: BytesRedis
) -> None:
    result = trigger(
        "message", "--duplicate", "3", "--url", receiver.webhook_url, "--secret", SECRET
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.count('"duplicate":true') == 2
    assert len(jobs(r, "messages")) == 1


def test_a_status_sequence_out_of_order_makes_one_job_per_status(
    receiver: Receiver, r: BytesRedis
) -> None:
    mid = new_message_id("919876543210")
    result = trigger(
        "status",
        "--message-id",
        mid,
        "--out-of-order",
        "--duplicate",
        "2",
        "--url",
        receiver.webhook_url,
        "--secret",
        SECRET,
    )

    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("status ")]
    sent_order = [line.split()[1] for line in lines[::2]]
    assert sorted(sent_order) == ["delivered", "read", "sent"]
    assert sent_order != ["sent", "delivered", "read"]
    statuses = sorted(job["envelope"]["data"]["status"] for job in jobs(r, "statuses"))
    assert statuses == ["delivered", "read", "sent"]


def test_a_failed_status_carries_errors(receiver: Receiver, r: BytesRedis) -> None:
    result = trigger(
        "status",
        "--sequence",
        "failed",
        "--error-code",
        "131047",
        "--error-title",
        "Re-engagement message",
        "--url",
        receiver.webhook_url,
        "--secret",
        SECRET,
    )

    assert result.exit_code == 0, result.output
    [job] = jobs(r, "statuses")
    [error] = job["envelope"]["data"]["errors"]
    assert (error["code"], error["title"]) == (131047, "Re-engagement message")


def test_a_test_event_goes_to_the_other_queue(receiver: Receiver, r: BytesRedis) -> None:
    result = trigger("test", "--url", receiver.webhook_url, "--secret", SECRET)

    assert result.exit_code == 0, result.output
    [job] = jobs(r, "other")
    assert job["kind"] == "test"


def test_a_wrong_secret_is_refused_and_says_why(receiver: Receiver, r: BytesRedis) -> None:
    result = trigger("message", "--url", receiver.webhook_url, "--secret", "wrong")

    assert result.exit_code == 1
    assert "→ 401" in result.stdout
    assert "WABA_WEBHOOK_SECRET" in result.stderr
    assert jobs(r, "messages") == []


def test_the_secret_comes_from_the_environment(
    receiver: Receiver, r: BytesRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WABA_WEBHOOK_SECRET", f"{SECRET},older")

    result = trigger("test", "--url", receiver.webhook_url)

    assert result.exit_code == 0, result.output
    assert len(jobs(r, "other")) == 1


def test_without_a_secret_it_says_where_to_get_one() -> None:
    result = trigger("message")

    assert result.exit_code == 2
    assert "--secret" in result.stderr and "WABA_WEBHOOK_SECRET" in result.stderr


def test_nothing_listening_is_a_one_line_error() -> None:
    result = trigger("message", "--url", closed_port_url(), "--secret", "s")

    assert result.exit_code == 1
    assert "nothing answers at" in result.stderr


def test_an_unknown_status_is_refused() -> None:
    result = trigger("status", "--sequence", "sent,seen", "--secret", "s")

    assert result.exit_code == 2
    assert "seen" in result.stderr


@pytest.fixture
def sim(receiver: Receiver) -> Iterator[str]:
    """A simulator delivering to the receiver, signing with its secret."""
    config = SimConfig(
        allow_insecure_webhooks=True,
        webhook_url=receiver.webhook_url,
        webhook_secret=SECRET,
        status_delay=0.0,
        auto_read=False,
    )
    with serve(create_sim_app(config)) as url:
        yield url


def test_via_the_simulator_the_message_is_known_to_it(sim: str, r: BytesRedis) -> None:
    result = trigger("message", "--text", "hello", "--via-sim", sim)

    assert result.exit_code == 0, result.output
    [job] = jobs(r, "messages")
    message_id = job["envelope"]["data"]["messageId"]
    assert f"wrote message {message_id}" in result.stdout
    assert "/webhook → 200 (received: the workers run the handlers" in result.stdout
    # The simulator can mark it read: it produced the message.
    response = httpx.post(
        f"{sim}/api/v1/messages/mark-read",
        json={"messageId": message_id},
        headers={"Authorization": "Bearer sim-key"},
    )
    assert response.status_code == 200


def test_via_the_simulator_statuses_follow_its_latest_send(sim: str, r: BytesRedis) -> None:
    trigger("message", "--via-sim", sim)  # opens the 24-hour window
    headers = {"Authorization": "Bearer sim-key"}
    sent = httpx.post(
        f"{sim}/api/v1/messages/text",
        json={"to": "919876543210", "message": "Hi back"},
        headers=headers,
    ).json()["messageId"]
    with httpx.Client(base_url=sim) as control:
        drain(control)
    before = {job["event_key"] for job in jobs(r, "statuses")}

    result = trigger("status", "--sequence", "failed", "--via-sim", sim)

    assert result.exit_code == 0, result.output
    new = [job for job in jobs(r, "statuses") if job["event_key"] not in before]
    assert [job["event_key"] for job in new] == [f"status:{sent}:failed"]


def test_via_the_simulator_the_test_event_uses_the_portal_api(sim: str, r: BytesRedis) -> None:
    result = trigger("test", "--via-sim", sim)

    assert result.exit_code == 0, result.output
    assert "→ 200" in result.stdout
    assert len(jobs(r, "other")) == 1


def test_duplicates_through_the_simulator_are_refused_with_a_way_out(sim: str) -> None:
    result = trigger("message", "--via-sim", sim, "--duplicate", "2")

    assert result.exit_code == 2
    assert "--direct" in result.stderr


def test_out_of_order_never_returns_the_original_order() -> None:
    rand = random.Random(1)
    for _ in range(50):
        assert out_of_order(["sent", "delivered", "read"], rand) != ["sent", "delivered", "read"]
    assert out_of_order(["failed"], rand) == ["failed"]


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhook"


@pytest.mark.parametrize(
    ("args", "read"),
    [
        (["--type", "video", "--text", "look"], lambda e: (e.media.mime_type, e.media.caption)),
        (["--type", "audio"], lambda e: e.media.mime_type),
        (["--type", "document", "--text", "bill.pdf"], lambda e: e.media.mime_type),
        (["--type", "sticker"], lambda e: e.media.mime_type),
        (
            ["--type", "interactive", "--text", "Track", "--payload", "t1"],
            lambda e: (e.text, e.payload),
        ),
        (["--type", "interactive", "--list", "--text", "Blue"], lambda e: (e.text, e.payload)),
        (["--type", "reaction", "--reply-to", "wamid.ABC"], lambda e: (e.reaction, e.reply_to)),
    ],
)
def test_every_message_type_the_model_reads_can_be_sent(
    receiver: Receiver, r: BytesRedis, args: list[str], read: Any
) -> None:
    from service.typedevents import InboundMessage, parse_event

    result = trigger("message", *args, "--url", receiver.webhook_url, "--secret", SECRET)

    assert result.exit_code == 0, result.output
    [job] = jobs(r, "messages")
    event = parse_event(job["envelope"], kind="message", event_key=job["event_key"])
    assert isinstance(event, InboundMessage) and event.type == args[1]
    expected = {
        "video": ("video/mp4", "look"),
        "audio": "audio/ogg; codecs=opus",
        "document": "application/pdf",
        "sticker": "image/webp",
        "reaction": ("\U0001f44d", "wamid.ABC"),
    }
    if args[1] == "interactive":
        expected["interactive"] = ("Blue", "blue") if "--list" in args else ("Track", "t1")
    assert read(event) == expected[args[1]]


def test_a_content_file_is_the_types_object(
    receiver: Receiver, r: BytesRedis, tmp_path: Path
) -> None:
    content = tmp_path / "document.json"
    content.write_text('{"id": "42", "mime_type": "text/csv", "filename": "orders.csv"}')

    result = trigger(
        "message", "--type", "document", "--content-file", str(content),
        "--url", receiver.webhook_url, "--secret", SECRET,
    )  # fmt: skip
    refused = CliRunner().invoke(main, ["trigger", "message", "--content-file", "-"], input="[1]")

    assert result.exit_code == 0, result.output
    [job] = jobs(r, "messages")
    assert job["envelope"]["data"]["document"]["filename"] == "orders.csv"
    assert refused.exit_code == 2 and "must hold a JSON object" in refused.output


def test_a_duplicate_answer_is_said_in_words(receiver: Receiver, r: BytesRedis) -> None:
    result = trigger(
        "message", "--duplicate", "2", "--url", receiver.webhook_url, "--secret", SECRET
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.count("a duplicate: the receiver had this event already") == 1
