"""The rules shared by client and simulator, the error mapping, backoff and settings."""

from __future__ import annotations

import pytest

from service.portal.backoff import RetryPolicy, parse_retry_after
from service.portal.config import PortalSettings
from service.portal.errors import InvalidPhoneNumber, RateLimited, invalid_request
from service.portal.validation import (
    MAX_TEXT_LENGTH,
    check_phone,
    check_template,
    check_text,
    fit_text,
    utf16_length,
)
from service.settings import ConfigError


@pytest.mark.parametrize(
    ("text", "length"), [("abc", 3), ("é", 1), ("😀", 2), ("👍🏽", 4), ("\ud800", 1)]
)
def test_utf16_length_counts_like_javascript(text: str, length: int) -> None:
    assert utf16_length(text) == length


@pytest.mark.parametrize("number", ["919876543210", "14155550123"])
def test_good_phone_numbers(number: str) -> None:
    assert check_phone(number) is None


@pytest.mark.parametrize(
    "number",
    ["+919876543210", "91 98765 43210", "0919876543210", "123", "٩١٩٨٧٦٥٤٣٢١٠", 919876543210],
)
def test_bad_phone_numbers(number: object) -> None:
    problem = check_phone(number)
    assert problem is not None and problem.error == "Invalid phone number format"


def test_text_bounds() -> None:
    assert check_text("x" * 4096) is None
    assert check_text("") is not None and check_text("x" * 4097) is not None
    assert check_text("😀" * 2049) is not None


BODY = {"type": "BODY", "text": "Hi {{1}} {{2}}", "example": {"body_text": [["a", "b"]]}}


def test_template_rules() -> None:
    assert check_template("ok_name", "UTILITY", "en", [BODY]) is None
    header = {"type": "HEADER", "format": "TEXT", "text": "Order"}
    buttons = {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Yes"},
            {
                "type": "URL",
                "text": "Track",
                "url": "https://x.test/{{1}}",
                "example": ["https://x.test/1"],
            },
            {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "919876543210"},
        ],
    }
    assert check_template("ok", "MARKETING", "en_US", [header, BODY, buttons]) is None
    one_sample = {**BODY, "example": {"body_text": [["a"]]}}
    assert check_template("ok", "UTILITY", "en", [one_sample]) is not None
    assert check_template("Bad Name", "UTILITY", "en", [BODY]) is not None
    assert check_template("ok", "OTHER", "en", [BODY]) is not None
    assert check_template("ok", "UTILITY", "en", []) is not None
    assert check_template("ok", "UTILITY", "en", [BODY, BODY]) is not None
    bad_button = {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "x", "url": "ftp://x"}]}
    assert check_template("ok", "UTILITY", "en", [BODY, bad_button]) is not None


def test_errors_say_call_reason_and_advice() -> None:
    exc = invalid_request("send_text", "Invalid phone number format", "digits only")
    assert isinstance(exc, InvalidPhoneNumber)
    assert str(exc) == (
        "send_text failed: Invalid phone number format: digits only (retrying will not help)"
    )
    limited = RateLimited("templates", "slow down", retry_after=2.0)
    assert limited.retryable and "retrying may help" in str(limited)


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base=1.0, cap=4.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]
    assert policy.delay(3, rand=lambda: 0.0) == 0.0
    assert policy.delay(1, retry_after=7.0, rand=lambda: 1.0) == 7.0


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_settings_from_env() -> None:
    settings = PortalSettings.from_env(
        {"WABA_API_URL": "http://127.0.0.1:8090/", "WABA_API_KEY": "k", "WABA_API_RATE": "5"}
    )
    assert settings.api_url == "http://127.0.0.1:8090/api/v1" and settings.rate == 5.0
    assert "'k'" not in repr(settings)
    with pytest.raises(ConfigError, match="WABA_API_URL"):
        PortalSettings.from_env({"WABA_API_KEY": "k"})
    with pytest.raises(ConfigError, match="WABA_API_KEY"):
        PortalSettings.from_env({"WABA_API_URL": "https://p.test/api/v1"})
    with pytest.raises(ConfigError, match="WABA_API_RATE"):
        PortalSettings.from_env(
            {"WABA_API_URL": "https://p.test", "WABA_API_KEY": "k", "WABA_API_RATE": "0"}
        )


def test_rate_pool_and_pacing_settings_from_env() -> None:
    base = {"WABA_API_URL": "https://p.test", "WABA_API_KEY": "k"}
    defaults = PortalSettings.from_env(base)
    assert defaults.rate == 80.0 and defaults.max_connections == 256
    assert defaults.contact_interval is None and defaults.contact_burst == 3.0
    paced = PortalSettings.from_env(
        {
            **base,
            "WABA_API_CONNECTIONS": "512",
            "WABA_API_CONTACT_INTERVAL": "6",
            "WABA_API_CONTACT_BURST": "2",
        }
    )
    assert paced.max_connections == 512 and paced.limits().max_connections == 512
    assert paced.contact_interval == 6.0 and paced.contact_burst == 2.0
    with pytest.raises(ConfigError, match="WABA_API_CONNECTIONS"):
        PortalSettings.from_env({**base, "WABA_API_CONNECTIONS": "2.5"})
    with pytest.raises(ConfigError, match="WABA_API_CONTACT_INTERVAL"):
        PortalSettings.from_env({**base, "WABA_API_CONTACT_INTERVAL": "-1"})


@pytest.mark.parametrize(
    ("text", "limit", "fitted"),
    [
        ("abc", 5, "abc"),
        ("abcdef", 4, "abcd"),
        ("é" * 6, 4, "é" * 4),
        ("ab😀", 4, "ab😀"),
        ("abc😀", 4, "abc"),  # the pair would straddle the limit: dropped whole
        ("😀😀😀", 5, "😀😀"),
    ],
)
def test_fit_text_cuts_to_utf16_units_without_splitting_a_pair(
    text: str, limit: int, fitted: str
) -> None:
    assert fit_text(text, limit) == fitted


def test_fit_text_fits_the_portal_limit_by_default() -> None:
    emoji = "😀" * 4096  # 4,096 characters, 8,192 UTF-16 units: the portal refuses it
    assert check_text(emoji) is not None
    fitted = fit_text(emoji)
    assert utf16_length(fitted) == MAX_TEXT_LENGTH and check_text(fitted) is None
    assert fit_text("x" * 5000) == "x" * MAX_TEXT_LENGTH
