"""Settings: read once from the environment, typed, validated at start-up.

Every variable is documented in the README ("Configuration"). Defaults live here
as named constants and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from service.keys import DEFAULT_PREFIX, Keys

__all__ = [
    "ConfigError",
    "Retention",
    "Settings",
    "env_bool",
    "env_float",
    "parse_bool",
    "parse_secrets",
]

DEFAULT_WEBHOOK_PATH = "/webhook"
# Request limits (README "Limits"): the portal sends one event per request, a few KiB; the
# largest documented one, a 4,096-unit text of 3-byte characters, is 12 KiB of JSON (24 KiB if
# every character were an escaped control character): 64 KiB is 2.5 times that.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: Bodies up to this size are also tried in JSON.stringify form when their raw bytes do not
#: verify: that costs up to ~1.5 µs a byte of Python on the event loop, so it is capped well
#: below the body limit (a 4,096-character text of 3-byte characters still fits).
DEFAULT_CANONICAL_MAX_BYTES = 16 * 1024
#: Seconds a request's whole body may take to arrive (the portal wants its answer within 5 s).
DEFAULT_BODY_TIMEOUT = 5.0
#: Connections (and requests in progress) one receiver serves; more get 503.
DEFAULT_MAX_CONNECTIONS = 1000
#: Signed bodies the parser refuses, kept raw (service.unparsed): at most this many.
DEFAULT_UNPARSED_CAP = 1000
# The portal's retry policy is undocumented; WhatsApp behind it retries for up to 7 days.
DEFAULT_DEDUPE_TTL = 7 * 24 * 3600
DEFAULT_INTAKE_DEADLINE = 2.0
#: Defined with the key names it prefixes (service/keys.py).
DEFAULT_QUEUE_PREFIX = DEFAULT_PREFIX
DEFAULT_JOB_TIMEOUT = 180
DEFAULT_WAITAOF_TIMEOUT_MS = 1000
#: Jobs in flight across every worker that the room above Redis's high-water mark is sized
#: for: one worker per queue (three) at the default concurrency, 200, plus 16 each for their
#: own connections (a worker's pool holds concurrency + 16; README "A full Redis"; the bytes
#: per job are service.redisguard's).
DEFAULT_MEMORY_HEADROOM_JOBS = 3 * (200 + 16)

# Retention (README "Retention"): how long each kind of data stays in Redis.
#: A finished job and its result stream (RQ's own default).
DEFAULT_RESULT_TTL = 500
#: A failed job, payload included, in the failed registry: long enough to notice and
#: requeue after a holiday, short of RQ's default of a year (payloads hold personal data).
DEFAULT_FAILURE_TTL = 14 * 24 * 3600
#: A conversation's handler store, after its last write.
DEFAULT_STORE_TTL = 30 * 24 * 3600
#: A contact's set of message ids already attributed to sends (the ledger's
#: reconciliation), after its last write: as long as a retry could still look.
DEFAULT_SENT_TTL = 7 * 24 * 3600
#: A message's folded status (the status-tracking built-in), after its last change:
#: ``WABAHOOKS_STATUS_RETENTION``, read with the built-in's configuration (workers/config.py).
DEFAULT_STATUS_RETENTION = 30 * 24 * 3600

# A failing handler's event (workers.RetryPolicy, README "Retries"): attempts in all, and the
# exponential backoff between them, with full jitter (service/portal/backoff.py).
DEFAULT_HANDLER_ATTEMPTS = 5
DEFAULT_HANDLER_BACKOFF = 5.0
DEFAULT_HANDLER_BACKOFF_CAP = 600.0


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


D = TypeVar("D", float, None)


def env_float(
    env: Mapping[str, str], name: str, default: D, *, what: str = "a number"
) -> float | D:
    """Return ``env[name]`` as a number greater than 0, or ``default`` when unset or empty.

    A malformed value raises :class:`ConfigError` naming the variable.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw}")
    return value


_FALSE, _TRUE = ("0", "false", "no", "off"), ("1", "true", "yes", "on")


def parse_bool(raw: str) -> bool:
    """Return ``raw`` as a boolean: 1/true/yes/on or 0/false/no/off, any case.

    Raise ``ValueError`` for anything else (callers name the setting in their error).
    """
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"must be true or false (1/0, yes/no, on/off), got {raw!r}")


def env_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Return ``env[name]`` as a boolean, ``default`` when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


def parse_secrets(raw: str) -> tuple[str, ...]:
    """Return the secrets of ``WABA_WEBHOOK_SECRET``: comma-separated while rotating, the
    current one first; blanks ignored."""
    return tuple(s.strip() for s in raw.split(",") if s.strip())


def _redis_url(env: Mapping[str, str]) -> str | None:
    from service.redisurl import redis_url_problem

    url = env.get("REDIS_URL", "").strip() or None
    if url is not None and (problem := redis_url_problem(url)) is not None:
        raise ConfigError(problem)
    return url


@dataclass(frozen=True)
class Retention:
    """Seconds each kind of data is kept in Redis (the claim's is ``Settings.dedupe_ttl``).

    Read by the receiver (``result_ttl``, ``failure_ttl``: written into each job) and by
    the workers (the rest). Build it with :meth:`from_env`.
    """

    result_ttl: int = DEFAULT_RESULT_TTL
    failure_ttl: int = DEFAULT_FAILURE_TTL
    store_ttl: int = DEFAULT_STORE_TTL
    sent_ttl: int = DEFAULT_SENT_TTL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Retention:
        """Read the ``WABAHOOKS_*_TTL`` variables; raise :class:`ConfigError`."""
        env = os.environ if env is None else env
        return cls(
            # 0 is RQ's "delete the job as soon as it finishes".
            result_ttl=_int(env, "WABAHOOKS_RESULT_TTL", DEFAULT_RESULT_TTL, 0),
            failure_ttl=_int(env, "WABAHOOKS_FAILURE_TTL", DEFAULT_FAILURE_TTL, 1),
            store_ttl=_int(env, "WABAHOOKS_STORE_TTL", DEFAULT_STORE_TTL, 1),
            sent_ttl=_int(env, "WABAHOOKS_SENT_TTL", DEFAULT_SENT_TTL, 1),
        )


@dataclass(frozen=True)
class Settings:
    """The receiver's configuration. Build it with :meth:`from_env`."""

    #: ``WABA_WEBHOOK_SECRET``: needed by what verifies or signs (:meth:`require_secrets`).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    redis_url: str | None = None
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    canonical_max_bytes: int = DEFAULT_CANONICAL_MAX_BYTES
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    unparsed_cap: int = DEFAULT_UNPARSED_CAP
    dedupe_ttl: int = DEFAULT_DEDUPE_TTL
    intake_deadline: float = DEFAULT_INTAKE_DEADLINE
    replay_tolerance: int | None = None
    queue_prefix: str = DEFAULT_QUEUE_PREFIX
    job_timeout: int = DEFAULT_JOB_TIMEOUT
    wait_aof: bool = False
    log_format: str = "auto"
    log_level: str = "info"
    retention: Retention = field(default_factory=Retention)
    #: Jobs in flight (all workers) the headroom above the high-water mark is sized for.
    memory_headroom_jobs: int = DEFAULT_MEMORY_HEADROOM_JOBS
    #: A fraction of maxmemory that places the high-water mark itself (None: computed from
    #: the headroom, service.redisguard).
    memory_high_water: float | None = None
    #: Start even when Redis's maxmemory-policy can evict our keys (service.redisguard).
    allow_eviction: bool = False

    @property
    def keys(self) -> Keys:
        """Our Redis keys and queue names under :attr:`queue_prefix`."""
        return Keys(self.queue_prefix)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default ``os.environ``); raise :class:`ConfigError`."""
        env = os.environ if env is None else env
        secrets = parse_secrets(env.get("WABA_WEBHOOK_SECRET", ""))
        path = env.get("WABAHOOKS_WEBHOOK_PATH", "").strip() or DEFAULT_WEBHOOK_PATH
        if not path.startswith("/"):
            raise ConfigError(f"WABAHOOKS_WEBHOOK_PATH must start with '/', got {path!r}")
        tolerance = _int(env, "WABAHOOKS_REPLAY_TOLERANCE", 0)
        log_format = env.get("WABAHOOKS_LOG_FORMAT", "auto").strip().lower() or "auto"
        if log_format not in ("auto", "json", "console"):
            raise ConfigError(
                f"WABAHOOKS_LOG_FORMAT must be auto, json or console, got {log_format!r}"
            )
        log_level = env.get("WABAHOOKS_LOG_LEVEL", "info").strip().lower() or "info"
        if log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"WABAHOOKS_LOG_LEVEL must be debug, info, warning or error, got {log_level!r}"
            )
        high_water = env_float(env, "WABAHOOKS_MEMORY_HIGH_WATER", None, what="a fraction")
        if high_water is not None and high_water > 1:
            raise ConfigError(
                "WABAHOOKS_MEMORY_HIGH_WATER is a fraction of maxmemory, at most 1, "
                f"got {high_water}"
            )
        return cls(
            secrets=secrets,
            redis_url=_redis_url(env),
            webhook_path=path,
            max_body_bytes=_int(env, "WABAHOOKS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1),
            canonical_max_bytes=_int(
                env, "WABAHOOKS_CANONICAL_MAX_BYTES", DEFAULT_CANONICAL_MAX_BYTES, 0
            ),
            body_timeout=env_float(
                env, "WABAHOOKS_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT, what="a number of seconds"
            ),
            max_connections=_int(env, "WABAHOOKS_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1),
            unparsed_cap=_int(env, "WABAHOOKS_UNPARSED_CAP", DEFAULT_UNPARSED_CAP, 1),
            dedupe_ttl=_int(env, "WABAHOOKS_DEDUPE_TTL", DEFAULT_DEDUPE_TTL, 1),
            intake_deadline=env_float(
                env,
                "WABAHOOKS_INTAKE_DEADLINE",
                DEFAULT_INTAKE_DEADLINE,
                what="a number of seconds",
            ),
            replay_tolerance=tolerance or None,
            queue_prefix=env.get("WABAHOOKS_QUEUE_PREFIX", DEFAULT_QUEUE_PREFIX),
            job_timeout=_int(env, "WABAHOOKS_JOB_TIMEOUT", DEFAULT_JOB_TIMEOUT, 1),
            wait_aof=env_bool(env, "WABAHOOKS_WAITAOF"),
            log_format=log_format,
            log_level=log_level,
            retention=Retention.from_env(env),
            memory_headroom_jobs=_int(
                env, "WABAHOOKS_MEMORY_HEADROOM_JOBS", DEFAULT_MEMORY_HEADROOM_JOBS, 1
            ),
            memory_high_water=high_water,
            allow_eviction=env_bool(env, "WABAHOOKS_ALLOW_EVICTION"),
        )

    def require_secrets(self) -> tuple[str, ...]:
        """Return the webhook secrets or raise :class:`ConfigError` saying they are needed."""
        if not self.secrets:
            raise ConfigError(
                "WABA_WEBHOOK_SECRET is not set: set it to the webhook secret the portal returned "
                "(several, comma-separated, while rotating)"
            )
        return self.secrets

    def require_redis_url(self) -> str:
        """Return ``REDIS_URL`` or raise :class:`ConfigError` saying it is needed."""
        if not self.redis_url:
            raise ConfigError(
                "REDIS_URL is not set: point it at your Redis/Valkey "
                "(e.g. redis://localhost:6379/0); `make dev` starts an embedded one for local use"
            )
        return self.redis_url
