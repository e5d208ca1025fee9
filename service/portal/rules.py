"""The portal's calling rules, once, without I/O: what to do next in one API call.

:func:`call_rules` is a generator that *asks* for I/O and is told what came of it; a driver
does the I/O (``service.portal.transport``: ``drive`` with ``httpx.Client`` and ``time.sleep``,
``adrive`` with ``httpx.AsyncClient`` and ``asyncio.sleep``). It yields:

- :class:`Permit` — ask the shared limiter: a paced call (a send) takes a permit, any other
  call only checks the shared hold-off after a 429; the driver answers the seconds to wait;
- :class:`Sleep` — wait that long;
- :class:`Send` — send the request; the driver answers the ``httpx.Response`` or throws the
  ``httpx.TransportError`` into the generator;
- :class:`HoldOff` — tell the limiter every process must hold back (the portal answered 429).

Its return value is the call's result; its exceptions are the call's errors
(``service.portal.errors``, ``raise … from exc``: no httpx exception escapes). The rules:

- ``idempotent=True``: retry on 429, 5xx and transport errors;
- ``idempotent=False`` (a send): retry only a connect error, a connect or pool timeout (the
  request never left) or a 429; a read timeout, a broken connection or a 5xx after sending
  raises :class:`~service.portal.errors.OutcomeUnknown`;
- waits follow :class:`~service.portal.backoff.RetryPolicy`; a wait (backoff or limiter)
  longer than the budget left raises :class:`~service.portal.errors.RateLimited` at once, so
  an RQ job is rescheduled rather than sleeping in the worker.

The :class:`CallObserver` (the workers' metrics) hears of every HTTP attempt and every wait
for the shared limiter, from here, whichever driver runs the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar

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

__all__ = [
    "DEFAULT_HOLD_OFF",
    "AsyncLimiter",
    "Call",
    "CallObserver",
    "HoldOff",
    "Limiter",
    "Op",
    "Permit",
    "Send",
    "Sleep",
    "call_rules",
    "parse_http_date",
]

log = structlog.get_logger("wabahooks.portal")

R = TypeVar("R")
# When a 429 carries no Retry-After, every process holds back this long.
DEFAULT_HOLD_OFF = 1.0


class Limiter(Protocol):
    """Paces sends across processes, and holds every call back after a 429."""

    def acquire(self, contact: str | None = None) -> float:
        """Take a permit to send (to ``contact``): 0.0 to go now, else the seconds to wait."""

    def held(self) -> float:
        """Return the seconds every call must still hold back after a 429 (0.0: none)."""

    def hold_off(self, seconds: float) -> None:
        """Hold every process back for ``seconds`` (after the portal answered 429)."""


class AsyncLimiter(Protocol):
    """:class:`Limiter` for the event loop: the same three calls, as coroutines."""

    async def acquire(self, contact: str | None = None) -> float: ...
    async def held(self) -> float: ...
    async def hold_off(self, seconds: float) -> None: ...


class CallObserver(Protocol):
    """Hears what the portal calls do (``workers.metrics.WorkerMetrics`` is one)."""

    def portal_request(self, call: str, status: str, seconds: float) -> None:
        """One HTTP attempt ended: ``status`` is the HTTP status, or ``error`` (no answer)."""

    def limiter_wait(self, seconds: float) -> None:
        """The shared rate limiter made this process wait ``seconds`` before a request."""


class NoObserver:
    """Hears nothing: the observer when none is given."""

    def portal_request(self, call: str, status: str, seconds: float) -> None:
        pass

    def limiter_wait(self, seconds: float) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One API call, as either client runs it: what to send and how to read the answer.

    ``parse(body, server_time)`` gets the decoded JSON (None if empty) and the portal's
    ``Date`` header (None if absent or garbled); it raises ValueError on an unexpected shape.
    ``paced``: the call creates a message to a person, so it waits for a permit from the
    shared rate (``contact``: to whom, for per-contact pacing). ``route``: the path with its
    parameters named (``conversations/{phone_number}/messages``), for traces, which must not
    carry them; None when the path has none.
    """

    name: str
    method: str
    path: str
    parse: Callable[[Any, datetime | None], R]
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str | int] | None = None
    idempotent: bool = True
    paced: bool = False
    contact: str | None = None
    route: str | None = None


@dataclass(frozen=True, slots=True)
class Permit:
    paced: bool
    contact: str | None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Send:
    method: str
    path: str
    body: Mapping[str, Any] | None
    params: Mapping[str, str | int] | None


@dataclass(frozen=True, slots=True)
class HoldOff:
    seconds: float


Op = Permit | Sleep | Send | HoldOff


def parse_http_date(value: str | None) -> datetime | None:
    """Return an HTTP ``Date`` header as an aware UTC datetime, or None if absent or garbled."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, without saying so
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _error_text(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


def call_rules(
    call: Call[R],
    retry: RetryPolicy,
    *,
    clock: Callable[[], float],
    rand: Callable[[], float],
    observer: CallObserver,
) -> Generator[Op, Any, R]:
    """Run ``call`` by the rules: yield what to do, return its result or raise its error."""
    name = call.name
    deadline = clock() + retry.budget
    attempt = 0
    while True:
        attempt += 1
        while (wait := (yield Permit(call.paced, call.contact))) > 0:
            if clock() + wait > deadline:
                raise RateLimited(
                    name,
                    f"the shared rate limit asks to wait {wait:.2f} s, more than the retry "
                    "budget left",
                    retry_after=wait,
                    status=None,
                )
            observer.limiter_wait(wait)
            yield Sleep(wait)
        cause: Exception | None = None
        sent = time.perf_counter()
        try:
            response: httpx.Response = yield Send(call.method, call.path, call.body, call.params)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            observer.portal_request(name, "error", time.perf_counter() - sent)
            # The request never left this process: safe to repeat, even a send.
            cause = exc
            error: PortalError = TransportError(
                name, f"could not reach the portal ({type(exc).__name__})"
            )
        except httpx.TransportError as exc:
            observer.portal_request(name, "error", time.perf_counter() - sent)
            if not call.idempotent:
                raise OutcomeUnknown(
                    name,
                    f"no answer after the request was sent ({type(exc).__name__}); it may "
                    "have been carried out: look for it before sending again",
                ) from exc
            cause = exc
            error = TransportError(name, f"no answer from the portal ({type(exc).__name__})")
        else:
            observer.portal_request(name, str(response.status_code), time.perf_counter() - sent)
            if response.is_success:
                return _decode(call, response)
            error = error_for_response(
                name,
                response.status_code,
                _error_text(response),
                parse_retry_after(response.headers.get("retry-after")),
            )
            if isinstance(error, RateLimited):
                yield HoldOff(error.retry_after or DEFAULT_HOLD_OFF)
            if isinstance(error, ServerError) and not call.idempotent:
                raise OutcomeUnknown(
                    name,
                    f"the portal answered {response.status_code} after receiving the "
                    "request; it may have been carried out: look for it before sending again",
                    status=response.status_code,
                ) from error
            if not error.retryable:
                raise error
        if attempt >= retry.max_attempts:
            raise error from cause
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        delay = retry.delay(attempt, retry_after, rand)
        if clock() + delay > deadline:
            if isinstance(error, RateLimited):
                raise RateLimited(
                    name,
                    f"rate limited by the portal; the wait of {delay:.2f} s is longer than the "
                    "retry budget left",
                    retry_after=delay,
                ) from cause
            raise error from cause
        log.info(
            "portal_retry", call=name, attempt=attempt, delay_s=round(delay, 3), status=error.status
        )
        yield Sleep(delay)


def _decode(call: Call[R], response: httpx.Response) -> R:
    try:
        body = response.json() if response.content else None
        return call.parse(body, parse_http_date(response.headers.get("date")))
    except ValueError as exc:
        if not call.idempotent:
            raise OutcomeUnknown(
                call.name,
                f"the portal answered {response.status_code} with an unexpected body ({exc}); "
                "look for the result before sending again",
                status=response.status_code,
            ) from exc
        raise ServerError(
            call.name,
            f"the portal answered {response.status_code} with an unexpected body ({exc})",
            status=response.status_code,
            retryable=False,
        ) from exc
