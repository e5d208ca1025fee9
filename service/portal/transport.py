"""Calling the portal: one ``httpx.Client``, the shared limiter, and the retry rules.

:class:`Caller` runs one API call to completion: it waits for a permit from the
:class:`Limiter`, sends, maps the answer onto ``service.portal.errors`` (``raise … from exc``:
no httpx exception escapes), and retries only what cannot double an effect:

- ``idempotent=True``: retry on 429, 5xx and transport errors;
- ``idempotent=False`` (a send): retry only a connect error, a connect or pool timeout (the
  request never left) or a 429; a read timeout, a broken connection or a 5xx after sending
  raises :class:`~service.portal.errors.OutcomeUnknown`.

Waits follow :class:`~service.portal.backoff.RetryPolicy`; a wait longer than the budget left
raises :class:`~service.portal.errors.RateLimited` at once.

An optional :class:`CallObserver` (the workers' metrics) hears of every HTTP attempt and every
wait for the shared limiter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import httpx
import structlog

from service.portal.backoff import RetryPolicy, parse_retry_after
from service.portal.errors import (
    OutcomeUnknown,
    PortalError,
    RateLimited,
    ServerError,
    TransportError,
    error_for_response,
)

__all__ = ["CallObserver", "Caller", "Limiter"]

log = structlog.get_logger("wabahooks.portal")

R = TypeVar("R")
# When a 429 carries no Retry-After, every process holds back this long.
DEFAULT_HOLD_OFF = 1.0


class Limiter(Protocol):
    """Paces requests across processes."""

    def acquire(self) -> float:
        """Take a permit: return 0.0 when a request may go now, else the seconds to wait."""

    def hold_off(self, seconds: float) -> None:
        """Hold every process back for ``seconds`` (after the portal answered 429)."""


class CallObserver(Protocol):
    """Hears what the portal calls do (``workers.metrics.WorkerMetrics`` is one)."""

    def portal_request(self, call: str, status: str, seconds: float) -> None:
        """One HTTP attempt ended: ``status`` is the HTTP status, or ``error`` (no answer)."""

    def limiter_wait(self, seconds: float) -> None:
        """The shared rate limiter made this process wait ``seconds`` before a request."""


def _error_text(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


class Caller:
    """Runs portal calls over one long-lived ``httpx.Client``."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        retry: RetryPolicy,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        observer: CallObserver | None = None,
    ) -> None:
        self._http = http
        self._observer = observer
        self._retry = retry
        self._limiter = limiter
        self._sleep = sleep
        self._clock = clock
        self._rand = rand

    def close(self) -> None:
        self._http.close()

    def _wait_for_permit(self, call: str, deadline: float) -> None:
        if self._limiter is None:
            return
        while (wait := self._limiter.acquire()) > 0:
            if self._clock() + wait > deadline:
                raise RateLimited(
                    call,
                    f"the shared rate limit asks to wait {wait:.2f} s, more than the retry "
                    "budget left",
                    retry_after=wait,
                    status=None,
                )
            if self._observer is not None:
                self._observer.limiter_wait(wait)
            self._sleep(wait)

    def call(
        self,
        call: str,
        method: str,
        path: str,
        parse: Callable[[Any], R],
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        idempotent: bool = True,
    ) -> R:
        deadline = self._clock() + self._retry.budget
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_permit(call, deadline)
            cause: Exception | None = None
            try:
                response = self._send(call, method, path, body, params)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left this process: safe to repeat, even a send.
                cause = exc
                error: PortalError = TransportError(
                    call, f"could not reach the portal ({type(exc).__name__})"
                )
            except httpx.TransportError as exc:
                if not idempotent:
                    raise OutcomeUnknown(
                        call,
                        f"no answer after the request was sent ({type(exc).__name__}); it may "
                        "have been carried out: look for it before sending again",
                    ) from exc
                cause = exc
                error = TransportError(call, f"no answer from the portal ({type(exc).__name__})")
            else:
                if response.is_success:
                    return self._decode(call, response, parse, idempotent)
                error = error_for_response(
                    call,
                    response.status_code,
                    _error_text(response),
                    parse_retry_after(response.headers.get("retry-after")),
                )
                if isinstance(error, RateLimited) and self._limiter is not None:
                    self._limiter.hold_off(error.retry_after or DEFAULT_HOLD_OFF)
                if isinstance(error, ServerError) and not idempotent:
                    raise OutcomeUnknown(
                        call,
                        f"the portal answered {response.status_code} after receiving the "
                        "request; it may have been carried out: look for it before sending again",
                        status=response.status_code,
                    ) from error
                if not error.retryable:
                    raise error
            self._backoff(call, attempt, error, cause, deadline)

    def _send(
        self,
        call: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
    ) -> httpx.Response:
        if self._observer is None:
            return self._http.request(method, path, json=body, params=params)
        sent = time.perf_counter()
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TransportError:
            self._observer.portal_request(call, "error", time.perf_counter() - sent)
            raise
        self._observer.portal_request(call, str(response.status_code), time.perf_counter() - sent)
        return response

    def _backoff(
        self,
        call: str,
        attempt: int,
        error: PortalError,
        cause: Exception | None,
        deadline: float,
    ) -> None:
        if attempt >= self._retry.max_attempts:
            raise error from cause
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        delay = self._retry.delay(attempt, retry_after, self._rand)
        if self._clock() + delay > deadline:
            if isinstance(error, RateLimited):
                raise RateLimited(
                    call,
                    f"rate limited by the portal; the wait of {delay:.2f} s is longer than the "
                    "retry budget left",
                    retry_after=delay,
                ) from cause
            raise error from cause
        log.info(
            "portal_retry", call=call, attempt=attempt, delay_s=round(delay, 3), status=error.status
        )
        self._sleep(delay)

    def _decode(
        self, call: str, response: httpx.Response, parse: Callable[[Any], R], idempotent: bool
    ) -> R:
        try:
            return parse(response.json() if response.content else None)
        except ValueError as exc:
            if not idempotent:
                raise OutcomeUnknown(
                    call,
                    f"the portal answered {response.status_code} with an unexpected body ({exc}); "
                    "look for the result before sending again",
                    status=response.status_code,
                ) from exc
            raise ServerError(
                call,
                f"the portal answered {response.status_code} with an unexpected body ({exc})",
                status=response.status_code,
                retryable=False,
            ) from exc
