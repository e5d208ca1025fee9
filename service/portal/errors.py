"""The portal client's exceptions: one tree, each saying which call failed, why, and whether
retrying can help (``retryable``).

::

    PortalError                      call, reason, retryable, status
    ├── InvalidRequest               400 (or refused locally before sending)
    │   ├── InvalidPhoneNumber       "Invalid phone number format"
    │   ├── OutsideMessagingWindow   "Outside 24-hour messaging window"
    │   ├── TemplateNotFound         "Template not found" (also a NotFound)
    │   ├── InvalidParameter         "Invalid parameter"
    │   ├── InvalidTemplateParameters "Invalid template parameters"
    │   ├── MediaUrlNotAccessible    "Media URL not accessible"
    │   ├── CategoryMismatch         "Template category doesn't match"
    │   └── ParameterCountMismatch   "Component parameter count mismatch"
    ├── AuthenticationFailed         401: missing or invalid API key
    ├── PermissionDenied             403: the key lacks permission
    ├── NotFound                     404
    ├── RateLimited                  429, or our shared limiter: retry_after seconds (retryable)
    ├── ServerError                  5xx (retryable)
    ├── TransportError               no response: connect error, timeout (retryable)
    └── OutcomeUnknown               a send reached the portal but no answer says whether it was
                                     accepted: look for it before sending again (not retryable)

Every httpx error is translated at the boundary (``raise … from exc``): callers never see one.
Messages never contain the API key.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "CategoryMismatch",
    "InvalidParameter",
    "InvalidPhoneNumber",
    "InvalidRequest",
    "InvalidTemplateParameters",
    "MediaUrlNotAccessible",
    "NotFound",
    "OutcomeUnknown",
    "OutsideMessagingWindow",
    "ParameterCountMismatch",
    "PermissionDenied",
    "PortalError",
    "RateLimited",
    "ServerError",
    "TemplateNotFound",
    "TransportError",
    "error_for_response",
    "invalid_request",
]


class PortalError(Exception):
    """A portal call failed. ``call`` names it, ``reason`` says why, ``retryable`` whether
    the same call later can succeed, ``status`` is the HTTP status (None if there was none)."""

    default_retryable = False

    def __init__(
        self,
        call: str,
        reason: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.call = call
        self.reason = reason
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        advice = "retrying may help" if self.retryable else "retrying will not help"
        super().__init__(f"{call} failed: {reason} ({advice})")


class InvalidRequest(PortalError):
    """The portal (or our own check before sending) refused the request's content."""


class InvalidPhoneNumber(InvalidRequest):
    """The phone number is not digits only with a country code."""


class OutsideMessagingWindow(InvalidRequest):
    """The contact has not written in 24 hours: only an approved template may start a chat."""


class NotFound(PortalError):
    """The resource (message, template, conversation) does not exist."""


class TemplateNotFound(InvalidRequest, NotFound):
    """No template has that name or id."""


class InvalidParameter(InvalidRequest):
    """A parameter is missing or malformed (e.g. a BODY variable without an example)."""


class InvalidTemplateParameters(InvalidRequest):
    """The template parameters are invalid."""


class MediaUrlNotAccessible(InvalidRequest):
    """The portal could not fetch the media URL."""


class CategoryMismatch(InvalidRequest):
    """The template's category does not match."""


class ParameterCountMismatch(InvalidRequest):
    """The number of parameters differs from the number of variables."""


class AuthenticationFailed(PortalError):
    """The API key is missing or invalid: check WABA_API_KEY."""


class PermissionDenied(PortalError):
    """The API key lacks permission for this call."""


class RateLimited(PortalError):
    """Too many requests: wait ``retry_after`` seconds (None if unknown) and try again."""

    default_retryable = True

    def __init__(
        self,
        call: str,
        reason: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(call, reason, status=status)


class ServerError(PortalError):
    """The portal answered 5xx."""

    default_retryable = True


class TransportError(PortalError):
    """No answer came back (connection refused, timeout, broken connection)."""

    default_retryable = True


class OutcomeUnknown(PortalError):
    """The request may have been carried out: look for its effect before repeating it."""


# The documented error texts (spec §6), most specific class first.
_BY_TEXT: tuple[tuple[str, type[InvalidRequest]], ...] = (
    ("invalid phone number format", InvalidPhoneNumber),
    ("outside 24-hour messaging window", OutsideMessagingWindow),
    ("template not found", TemplateNotFound),
    ("invalid template parameters", InvalidTemplateParameters),
    ("media url not accessible", MediaUrlNotAccessible),
    ("template category doesn't match", CategoryMismatch),
    ("component parameter count mismatch", ParameterCountMismatch),
    ("invalid parameter", InvalidParameter),
)


def invalid_request(
    call: str, error: str, detail: str | None = None, *, status: int | None = 400
) -> InvalidRequest:
    """Return the :class:`InvalidRequest` subclass for a documented ``error`` text.

    ``status`` is None when we refuse a request ourselves, before sending it.
    """
    lowered = error.lower()
    cls = next((c for text, c in _BY_TEXT if text in lowered), InvalidRequest)
    reason = error if not detail or detail == error else f"{error}: {detail}"
    return cls(call, reason, status=status)


def error_for_response(
    call: str, status: int, error: str | None, retry_after: float | None = None
) -> PortalError:
    """Return the exception for an error response (``error`` is the body's ``error`` text)."""
    text = error or f"HTTP {status}"
    if status == 400 or (status == 404 and "template not found" in text.lower()):
        return invalid_request(call, text, status=status)
    if status == 401:
        return AuthenticationFailed(call, f"{text}: check WABA_API_KEY", status=status)
    if status == 403:
        return PermissionDenied(call, f"{text}: the API key lacks permission", status=status)
    if status == 404:
        return NotFound(call, text, status=status)
    if status == 429:
        wait = "" if retry_after is None else f"; retry after {retry_after:g} s"
        return RateLimited(call, f"rate limited by the portal{wait}", retry_after=retry_after)
    if status >= 500:
        return ServerError(call, f"the portal answered {status}: {text}", status=status)
    return InvalidRequest(call, f"the portal answered {status}: {text}", status=status)
