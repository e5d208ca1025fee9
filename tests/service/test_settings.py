"""Settings are read once, typed, and a bad value names its variable."""

from __future__ import annotations

import pytest

from service.app import create_app
from service.settings import ConfigError, Settings, parse_bool
from workers.config import parse_config


def test_defaults_with_only_the_secret() -> None:
    settings = Settings.from_env({"WABA_WEBHOOK_SECRET": "hunter2"})

    assert settings.secrets == ("hunter2",)
    assert settings.webhook_path == "/webhook"
    assert settings.max_body_bytes == 64 * 1024
    assert settings.canonical_max_bytes == 16 * 1024
    assert settings.body_timeout == 5.0
    assert settings.memory_high_water is None  # computed from the headroom
    assert settings.memory_headroom_jobs == 648
    assert settings.allow_eviction is False
    assert settings.dedupe_ttl == 7 * 24 * 3600
    assert settings.intake_deadline == 2.0
    assert settings.replay_tolerance is None
    assert settings.redis_url is None
    assert "hunter2" not in repr(settings)


def test_rotation_secrets_are_comma_separated() -> None:
    settings = Settings.from_env({"WABA_WEBHOOK_SECRET": " new , old ,"})

    assert settings.secrets == ("new", "old")


@pytest.mark.parametrize("value", [None, "", " , "])
def test_the_secret_is_required_where_it_is_needed(value: str | None) -> None:
    env = {} if value is None else {"WABA_WEBHOOK_SECRET": value}
    settings = Settings.from_env(env)  # workers and Redis-only commands need no secret

    assert settings.secrets == ()
    with pytest.raises(ConfigError, match="^WABA_WEBHOOK_SECRET is not set"):
        settings.require_secrets()
    with pytest.raises(ConfigError, match="^WABA_WEBHOOK_SECRET is not set"):
        create_app(settings)  # the receiver verifies every delivery


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True)]
    + [("0", False), ("false", False), ("No", False), ("off", False)],
)
def test_one_boolean_reading_for_every_setting(raw: str, expected: bool) -> None:
    assert parse_bool(raw) is expected
    assert Settings.from_env({"WABAHOOKS_WAITAOF": raw}).wait_aof is expected
    target = {"name": "t", "url": "https://x.test/h", "secret": "s"}
    forwarded = parse_config(
        {"handlers": {"forward": {"http": [target]}}},
        {"WABAHOOKS_FORWARD_ALLOW_PRIVATE": raw},
    )
    assert forwarded.raw["handlers"]["forward"]["allow_private_targets"] is expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WABAHOOKS_MAX_BODY_BYTES", "lots"),
        ("WABAHOOKS_INTAKE_DEADLINE", "-1"),
        ("WABAHOOKS_DEDUPE_TTL", "0"),
        ("WABAHOOKS_WEBHOOK_PATH", "webhook"),
        ("WABAHOOKS_WAITAOF", "maybe"),
        ("WABAHOOKS_LOG_FORMAT", "xml"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} "):
        Settings.from_env({"WABA_WEBHOOK_SECRET": "s", name: value})


def test_redis_url_is_required_where_it_is_needed() -> None:
    settings = Settings.from_env({"WABA_WEBHOOK_SECRET": "s"})

    with pytest.raises(ConfigError, match="^REDIS_URL is not set"):
        settings.require_redis_url()
