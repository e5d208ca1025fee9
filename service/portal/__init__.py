"""The WABA Portal's API client, shared by the receiver's commands and the workers.

``PortalClient`` (blocking) and ``AsyncPortalClient`` (asyncio) share one implementation of the
portal's rules (``rules.py``, ``endpoints.py``); ``RateLimiter``/``AsyncRateLimiter`` share the
send rate every worker process learns (``ratelimit.py``).

``service`` and ``workers`` both import from here (``service`` never imports ``workers``).
Errors: see ``service.portal.errors``; the simulator that serves the same contract: ``service.sim``.
"""

from __future__ import annotations

from service.portal.aclient import AsyncPortalClient
from service.portal.aratelimit import AsyncRateLimiter
from service.portal.backoff import RetryPolicy
from service.portal.client import Limiter, PortalClient
from service.portal.config import PortalSettings
from service.portal.errors import (
    AuthenticationFailed,
    CategoryMismatch,
    InvalidParameter,
    InvalidPhoneNumber,
    InvalidRequest,
    InvalidTemplateParameters,
    MediaUrlNotAccessible,
    NotFound,
    OutcomeUnknown,
    OutsideMessagingWindow,
    ParameterCountMismatch,
    PermissionDenied,
    PortalError,
    RateLimited,
    ServerError,
    TemplateNotFound,
    TransportError,
)
from service.portal.models import (
    Conversation,
    LastMessage,
    Message,
    Page,
    SentMessage,
    Template,
    WebhookConfig,
    WebhookTestResult,
)
from service.portal.ratelimit import LimiterState, RateLimiter, limiter_state
from service.portal.rules import AsyncLimiter

__all__ = [
    "AsyncLimiter",
    "AsyncPortalClient",
    "AsyncRateLimiter",
    "AuthenticationFailed",
    "CategoryMismatch",
    "Conversation",
    "InvalidParameter",
    "InvalidPhoneNumber",
    "InvalidRequest",
    "InvalidTemplateParameters",
    "LastMessage",
    "Limiter",
    "LimiterState",
    "MediaUrlNotAccessible",
    "Message",
    "NotFound",
    "OutcomeUnknown",
    "OutsideMessagingWindow",
    "Page",
    "ParameterCountMismatch",
    "PermissionDenied",
    "PortalClient",
    "PortalError",
    "PortalSettings",
    "RateLimited",
    "RateLimiter",
    "RetryPolicy",
    "SentMessage",
    "ServerError",
    "Template",
    "TemplateNotFound",
    "TransportError",
    "WebhookConfig",
    "WebhookTestResult",
    "limiter_state",
]
