"""The archive's settings and contact tokens (service/archive.py)."""

from __future__ import annotations

import pytest

from service.archive import DEFAULT_ARCHIVE_RETENTION, ArchiveSettings, contact_token
from service.logs import id_key
from service.settings import ConfigError


def test_off_unless_asked_and_the_default_retention_is_the_dedupe_window() -> None:
    assert ArchiveSettings.from_env({}) == ArchiveSettings(enabled=False, key=None)
    settings = ArchiveSettings.from_env({"WABAHOOKS_ARCHIVE": "on", "WABAHOOKS_LOG_KEY": "k"})
    assert settings.enabled and settings.retention == DEFAULT_ARCHIVE_RETENTION == 7 * 24 * 3600
    assert settings.key == id_key({"WABAHOOKS_LOG_KEY": "k"})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"WABAHOOKS_ARCHIVE": "maybe"}, r"WABAHOOKS_ARCHIVE must be true or false \(1/0"),
        ({"WABAHOOKS_ARCHIVE": "on"}, "WABAHOOKS_ARCHIVE=on needs WABAHOOKS_LOG_KEY"),
        ({"WABAHOOKS_ARCHIVE_RETENTION": "1w"}, "must be a whole number of seconds, got '1w'"),
        ({"WABAHOOKS_ARCHIVE_RETENTION": "10"}, "must be at least 60 seconds, got 10"),
    ],
)
def test_a_bad_setting_names_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        ArchiveSettings.from_env(env)


def test_the_secret_keys_the_archive_when_there_is_no_log_key() -> None:
    settings = ArchiveSettings.from_env({"WABAHOOKS_ARCHIVE": "1", "WABA_WEBHOOK_SECRET": "s1,s2"})
    assert settings.enabled and settings.key == id_key({"WABAHOOKS_LOG_KEY": "s1"})


def test_contact_tokens_are_keyed_and_hide_the_number() -> None:
    one, other = b"k" * 32, b"j" * 32
    token = contact_token("919876543210", one)
    assert token == contact_token("919876543210", one) and len(token) == 16
    assert token != contact_token("919876543210", other)
    assert token != contact_token("919876543211", one)
    assert "3210" not in token
