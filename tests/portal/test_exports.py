"""The package's public surface, pinned; and the CLI command is registered."""

from __future__ import annotations

from click.testing import CliRunner

import service.portal
from service.cli import main


def test_public_names() -> None:
    assert sorted(service.portal.__all__) == [
        "AsyncLimiter", "AsyncPortalClient", "AsyncRateLimiter", "AuthenticationFailed",
        "CategoryMismatch", "Conversation", "InvalidParameter",
        "InvalidPhoneNumber", "InvalidRequest", "InvalidTemplateParameters", "LastMessage",
        "Limiter", "LimiterState", "MediaUrlNotAccessible", "Message", "NotFound", "OutcomeUnknown",
        "OutsideMessagingWindow", "Page", "ParameterCountMismatch", "PermissionDenied",
        "PortalClient", "PortalError", "PortalSettings", "RateLimited", "RateLimiter",
        "RetryPolicy", "SentMessage", "ServerError", "Template", "TemplateNotFound",
        "TransportError", "WebhookConfig", "WebhookTestResult", "limiter_state",
    ]  # fmt: skip
    for name in service.portal.__all__:
        assert getattr(service.portal, name)


def test_portal_sim_is_a_wabahooks_command() -> None:
    result = CliRunner().invoke(main, ["portal-sim", "--help"])
    assert result.exit_code == 0 and "--error-after-send-rate" in result.output
    assert "--clock-skew" in result.output


def test_portal_sim_refuses_a_plain_http_webhook_url() -> None:
    result = CliRunner().invoke(main, ["portal-sim", "--webhook-url", "http://example.com/hook"])
    assert result.exit_code == 2 and "HTTPS" in result.output
