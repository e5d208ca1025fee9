"""The portal client's settings: read once from the environment, typed, validated.

=============================  ==================================================================
``WABA_API_URL``               the portal's API base URL, e.g. ``https://portal.example.com/api/v1``
                               (``/api/v1`` is appended when the path lacks it)
``WABA_API_KEY``               the API key, sent only as ``Authorization: Bearer …``
``WABA_API_RATE``              the ceiling of sends per second shared by every worker (default 80,
                               Meta's default throughput per business number); the shared rate
                               drops after a 429 and climbs back to it
``WABA_API_BURST``             sends allowed at once after a quiet spell (default: the rate)
``WABA_API_TIMEOUT``           seconds to wait for the portal's answer (default 15)
``WABA_API_CONNECTIONS``       connections each process keeps to the portal at most (default 256:
                               room for hundreds of calls in flight in one async worker)
``WABA_API_CONTACT_INTERVAL``  per-contact pacing, off by default: seconds between sends to one
                               contact (WhatsApp's guidance: about 6)
``WABA_API_CONTACT_BURST``     sends to one contact allowed at once under that pacing (default 3)
=============================  ==================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from service.settings import ConfigError, env_float

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_CONTACT_BURST",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_RATE",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_RETRY_BUDGET",
    "PortalSettings",
    "api_rate",
]

#: Sends per second: Meta's default throughput for one business phone number (80 messages/s;
#: 1,000 after an upgrade, when WABA_API_RATE should follow).
DEFAULT_RATE = 80.0
#: Connections per process: an async worker keeps up to a few hundred calls in flight.
DEFAULT_MAX_CONNECTIONS = 256
#: Seconds an idle connection is kept for reuse: under the 5 s after which Node's HTTP server
#: (the portal is a Node.js service) and uvicorn (the simulator) close idle connections. At
#: 5 s, httpx's default, a send could go out on a connection the server was closing: a reset
#: with no answer, an unknown outcome, a retry and a history search for a reply that may
#: already be sent (seen once in ~6 runs of the fifty-contact test against the simulator).
KEEPALIVE_EXPIRY = 4.0
#: Under per-contact pacing, sends to one contact allowed back to back.
DEFAULT_CONTACT_BURST = 3.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
# Retries, waits included, stay well inside an RQ job's default 180 s timeout.
DEFAULT_RETRY_BUDGET = 30.0
DEFAULT_MAX_ATTEMPTS = 5
API_PATH = "/api/v1"


def api_rate(env: Mapping[str, str]) -> float:
    """Return ``WABA_API_RATE`` (the ceiling of the shared send rate), or its default."""
    rate = env_float(env, "WABA_API_RATE", DEFAULT_RATE)
    assert rate is not None
    return rate


def normalise_url(url: str) -> str:
    """Return ``url`` without a trailing slash, ending in ``/api/v1``."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


@dataclass(frozen=True)
class PortalSettings:
    """How to reach the portal. Build it with :meth:`from_env`; the key is kept out of ``repr``."""

    api_url: str
    api_key: str = field(repr=False)
    rate: float = DEFAULT_RATE
    burst: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retry_budget: float = DEFAULT_RETRY_BUDGET
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Seconds between sends to one contact (None: no per-contact pacing).
    contact_interval: float | None = None
    contact_burst: float = DEFAULT_CONTACT_BURST

    def limits(self) -> httpx.Limits:
        """The connection pool of one client: every connection may stay open between calls,
        for :data:`KEEPALIVE_EXPIRY` seconds at most."""
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PortalSettings:
        """Read the settings from ``env`` (default ``os.environ``); raise :class:`ConfigError`."""
        env = os.environ if env is None else env
        url = env.get("WABA_API_URL", "").strip()
        if not url:
            raise ConfigError(
                "WABA_API_URL is not set: set it to the portal's API URL "
                "(e.g. https://portal.example.com/api/v1, or http://127.0.0.1:8090/api/v1 "
                "for `wabahooks portal-sim`)"
            )
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"WABA_API_URL must start with https:// or http://, got {url!r}")
        key = env.get("WABA_API_KEY", "").strip()
        if not key:
            raise ConfigError("WABA_API_KEY is not set: set it to the portal API key")
        timeout = env_float(env, "WABA_API_TIMEOUT", DEFAULT_READ_TIMEOUT)
        connections = env_float(
            env, "WABA_API_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, what="a whole number"
        )
        contact_burst = env_float(env, "WABA_API_CONTACT_BURST", DEFAULT_CONTACT_BURST)
        assert timeout is not None and connections is not None and contact_burst is not None
        if connections != int(connections):
            raise ConfigError(f"WABA_API_CONNECTIONS must be a whole number, got {connections:g}")
        return cls(
            api_url=normalise_url(url),
            api_key=key,
            rate=api_rate(env),
            burst=env_float(env, "WABA_API_BURST", None),
            read_timeout=timeout,
            max_connections=int(connections),
            contact_interval=env_float(env, "WABA_API_CONTACT_INTERVAL", None),
            contact_burst=contact_burst,
        )
