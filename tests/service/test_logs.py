"""Message ids in logs: keyed hashes, the same in every process with the same key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

from service.logs import IdHasher, id_key

WAMID = "wamid." + base64.b64encode(b"\x15\x02447700900013:ab12cd").decode()


def test_every_message_id_in_any_field_becomes_a_keyed_token() -> None:
    hasher = IdHasher(b"k" * 32)
    token = hasher.token(WAMID)
    line = {
        "event": f"job message message:{WAMID} failed",
        "event_key": f"status:{WAMID}:delivered",
        "message_id": WAMID,
        "nested": {"ids": [WAMID, 3]},
        "status": 200,
    }

    scrubbed = hasher(None, "info", dict(line))

    assert scrubbed == {
        "event": f"job message message:{token} failed",
        "event_key": f"status:{token}:delivered",
        "message_id": token,
        "nested": {"ids": [token, 3]},
        "status": 200,
    }
    assert token.startswith("wamid~") and len(token) == len("wamid~") + 16


def test_the_key_comes_from_the_log_key_else_the_webhook_secret() -> None:
    both = id_key({"WABAHOOKS_LOG_KEY": "a", "WABA_WEBHOOK_SECRET": "b,c"})
    assert both == id_key({"WABAHOOKS_LOG_KEY": "a"})
    assert id_key({"WABA_WEBHOOK_SECRET": " b , c"}) == id_key({"WABAHOOKS_LOG_KEY": "b"})
    assert id_key({}) is None
    # Not the secret itself: a derived key.
    assert id_key({"WABAHOOKS_LOG_KEY": "a"}) != b"a"
    other = IdHasher(id_key({"WABAHOOKS_LOG_KEY": "x"}) or b"")
    assert IdHasher(both or b"").token(WAMID) != other.token(WAMID)


def test_log_id_prints_the_token_to_grep_for() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WABA", "REDIS_URL"))}
    result = subprocess.run(
        [sys.executable, "-m", "service", "log-id", WAMID],
        env={**clean, "WABAHOOKS_LOG_KEY": "the-key"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    key = id_key({"WABAHOOKS_LOG_KEY": "the-key"})
    assert result.stdout.strip() == IdHasher(key or b"").token(WAMID)
