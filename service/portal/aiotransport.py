"""The async client's HTTP transport: httpx's API over aiohttp's connection pool.

``httpx.AsyncClient``'s own transport (httpcore) collapses with hundreds of requests in flight
(httpx issue #3215; ``bench/portal_transport.py`` measures it); the ``httpx-aiohttp`` package's
transport keeps httpx's API over aiohttp. :func:`portal_transport` returns it with two changes
that matter to the retry rules and to nothing else:

- **Errors say honestly whether the request left.** The package maps every
  ``aiohttp.ClientConnectionError`` to ``httpx.ConnectTimeout``, including a server that
  drops the connection *after* receiving the request (``ServerDisconnectedError``) or a reset
  while reading the answer: the client would then take a send for "never sent" and repeat it.
  Here only a failure to connect (``ClientConnectorError``, aiohttp's connect timeout) is a
  connect error; any other failure is ``httpx.ReadError``/``ReadTimeout``/``RemoteProtocolError``
  (it may have been carried out). Raw aiohttp errors it leaves unmapped are mapped too.
- **The body is read inside the transport**, so errors while reading it get the same mapping
  (the portal's answers are small JSON documents), and there is **no cookie jar** (the portal
  sets no cookies; parsing them costs time).
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["portal_transport"]


def _connect_failed(cause: BaseException | None) -> bool:
    """True if aiohttp failed before the request could be written (safe to repeat)."""
    return isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def _remap(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    message = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    if _connect_failed(cause):
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(message, request=request)
        return httpx.ConnectError(message, request=request)
    if isinstance(cause, aiohttp.SocketTimeoutError) or isinstance(exc, httpx.ReadTimeout):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)


class _PortalAiohttpTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # httpx-aiohttp's own method, less its streaming (the answers are small JSON
        # documents, read whole here) and with honest errors (the module docstring).
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        try:
            async with self.client.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=request.content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            ) as response:
                body = await response.read()  # decompressed by aiohttp, if it was
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _remap(exc, request) from exc
        headers = [
            (name, value)
            for name, value in response.raw_headers
            if name.lower() not in (b"content-encoding", b"content-length")
        ]
        return httpx.Response(response.status, headers=headers, content=body, request=request)


def _session_factory(limits: httpx.Limits) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        # 0 means "no limit" to aiohttp; httpx's None means the same.
        limit=limits.max_connections or 0,
        limit_per_host=0,  # one host: the pool's limit is the host's
        keepalive_timeout=limits.keepalive_expiry or 15.0,
        ssl=httpx.create_ssl_context(),
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def portal_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """Return the async client's transport: at most ``limits.max_connections`` connections."""
    return _PortalAiohttpTransport(limits=limits, client=lambda: _session_factory(limits))
