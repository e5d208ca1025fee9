"""Posting to a listed endpoint without being turned against our own network (SSRF).

The host is resolved once; every address it resolves to must be public (not
loopback, private, link-local — where cloud metadata services live —, shared,
multicast or reserved; an IPv6 address that embeds an IPv4 one — IPv4-mapped, NAT64,
6to4 — is judged by the IPv4 address it leads to), and the connection goes to the
checked address itself, with the original ``Host`` header and TLS server name, so a
second lookup cannot swap in another address. Redirects are never followed.
``allow_private`` turns the address check off, for local development only.

Errors: :class:`ForwardError` (unreachable, or not 2xx: retrying may help) and
:class:`RefusedDestination` (a ``workers.Permanent``: retrying cannot help).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping

import httpx

from workers import Permanent

__all__ = ["ForwardError", "RefusedDestination", "Resolver", "post", "refusal", "resolve"]

Resolver = Callable[[str, int], list[str]]


class ForwardError(Exception):
    """The target could not be reached or did not answer 2xx (``status`` if it answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RefusedDestination(Permanent):
    """The target resolves to an address we never connect to."""


def getaddrinfo(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, once)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


#: NAT64's well-known prefix (RFC 6052): the IPv4 address is the last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: NAT64's local-use prefix (RFC 8215): where the IPv4 address sits depends on the prefix
#: length the operator chose, so it cannot be checked; it is never public anyway.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a translated or tunnelled IPv6 address leads to, and how."""
    if ip.ipv4_mapped is not None:
        return "", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64 of ", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4 of ", ip.sixtofour
    return None


def refusal(address: str) -> str | None:
    """Return why ``address`` is refused (e.g. ``"loopback"``), or None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of it
    how = ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return "local-use NAT64 (non-public)"
        if (embedded := _embedded_ipv4(ip)) is not None:
            how, ip = embedded
    if ip.is_loopback:
        return how + "loopback"
    if ip.is_link_local:
        return how + "link-local (cloud metadata)"
    if ip.is_private:
        return how + "private"
    if ip.is_multicast:
        return how + "multicast"
    if not ip.is_global:
        return how + "non-public"
    return None


def resolve(url: httpx.URL, *, allow_private: bool, resolver: Resolver = getaddrinfo) -> str:
    """Resolve ``url``'s host once; return the address to connect to, checked."""
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        raise ForwardError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise ForwardError(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise RefusedDestination(
                    f"{host} resolves to {address}, a {reason} address: refused "
                    "(only public targets; allow_private_targets = true is for local development)"
                )
    return addresses[0]


def post(
    client: httpx.Client,
    url: httpx.URL,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_private: bool,
    resolver: Resolver = getaddrinfo,
) -> httpx.Response:
    """POST ``body`` to ``url`` at its pinned, checked address; return a 2xx response."""
    address = resolve(url, allow_private=allow_private, resolver=resolver)
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    try:
        response = client.post(
            url.copy_with(host=address),
            content=body,
            headers={**headers, "Host": url.netloc.decode("ascii")},
            extensions=extensions,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise ForwardError(f"{url.host}: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise ForwardError(
            f"{url.host} answered {response.status_code} {response.reason_phrase}",
            response.status_code,
        )
    return response
