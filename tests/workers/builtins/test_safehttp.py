"""The forwarding address filter judges IPv6 addresses that lead to IPv4 ones (NAT64, 6to4)
by the IPv4 address they embed."""

from __future__ import annotations

import httpx
import pytest

from workers.builtins import safehttp


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("64:ff9b::127.0.0.1", "NAT64 of loopback"),
        ("64:ff9b::a00:5", "NAT64 of private"),
        ("64:ff9b::192.168.1.1", "NAT64 of private"),
        ("64:ff9b::169.254.169.254", "NAT64 of link-local (cloud metadata)"),
        ("64:ff9b::100.64.0.1", "NAT64 of non-public"),
        ("64:ff9b:1::a00:5", "local-use NAT64 (non-public)"),
        ("64:ff9b:1:a00:5::", "local-use NAT64 (non-public)"),
        ("2002:7f00:1::", "6to4 of loopback"),
        ("2002:a00:5::1", "6to4 of private"),
        ("2002:a9fe:a9fe::", "6to4 of link-local (cloud metadata)"),
        ("2002:c0a8:101:1::1", "6to4 of private"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
        # A public IPv4 address behind NAT64 or 6to4 stays reachable.
        ("64:ff9b::93.184.215.14", None),
        ("2002:5db8:d70e::1", None),
    ],
)
def test_embedded_ipv4_addresses_are_judged_by_what_they_lead_to(
    address: str, reason: str | None
) -> None:
    assert safehttp.refusal(address) == reason


def test_a_name_resolving_to_nat64_of_the_metadata_service_is_refused() -> None:
    url = httpx.URL("https://hooks.example.com/in")
    with pytest.raises(safehttp.RefusedDestination, match="NAT64 of link-local"):
        safehttp.resolve(url, allow_private=False, resolver=lambda h, p: ["64:ff9b::a9fe:a9fe"])
