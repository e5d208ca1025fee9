"""``wabahooks check``: is it set up right? One check per line (``ok``, ``warn``, ``fail``),
exit 1 if any failed: settings, the webhook secret, the handlers (through the
``wabahooks.checks`` entry points: ``workers`` adds its own), Redis (reachable, version, AOF,
``noeviction``, memory), and the portal when ``WABA_API_URL`` is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import click
import redis

from service.cli.admin import MIN_REDIS
from service.cli.common import safe_url
from service.redisguard import MemoryMarks, eviction_problem, memory_state
from service.redisurl import redis_url_problem
from service.settings import ConfigError, Settings, parse_secrets

__all__ = ["CHECKS_GROUP", "Result", "check", "check_portal", "check_redis", "run_checks"]


@dataclass(frozen=True)
class Result:
    """One check's outcome: ``ok``, ``warn`` or ``fail``, and why."""

    level: str
    name: str
    detail: str


def _redis_info(connection: redis.Redis, section: str) -> dict[str, Any]:
    info: Any = connection.info(section)
    return dict(info)


def _config_get(connection: redis.Redis, name: str, info_section: str, info_key: str) -> str:
    """A server setting by CONFIG GET, else (managed Redis forbids CONFIG) from INFO."""
    try:
        value: Any = connection.config_get(name)
        if name in value:
            return str(value[name])
    except redis.ResponseError:
        pass
    return str(_redis_info(connection, info_section).get(info_key, "?"))


def check_redis(
    url: str | None, *, allow_eviction: bool = False, marks: MemoryMarks | None = None
) -> list[Result]:
    """Check that Redis answers, is set up for durability, and has room for events."""
    if not url:
        return [Result("fail", "redis", "REDIS_URL is not set: point it at your Redis/Valkey")]
    if (problem := redis_url_problem(url)) is not None:
        return [Result("fail", "redis", problem)]
    connection = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        connection.ping()
    except redis.RedisError as exc:
        return [Result("fail", "redis", f"cannot reach {safe_url(url)}: {exc}")]
    try:
        server = _redis_info(connection, "server")
        results = [Result("ok", "redis", f"reachable at {safe_url(url)}")]
        version = str(server.get("redis_version", "0"))
        product = f"Valkey {server['valkey_version']}" if "valkey_version" in server else "Redis"
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers >= MIN_REDIS:
            results.append(Result("ok", "version", f"{product} (Redis {version})"))
        else:
            results.append(
                Result(
                    "fail",
                    "version",
                    f"Redis {version}: {'.'.join(map(str, MIN_REDIS))} or later (or Valkey) needed",
                )
            )
        aof = _config_get(connection, "appendonly", "persistence", "aof_enabled")
        if aof in ("yes", "1"):
            fsync = _config_get(connection, "appendfsync", "persistence", "-")
            if fsync == "no":
                results.append(Result("warn", "aof", "on, but appendfsync no: use everysec"))
            else:
                results.append(Result("ok", "aof", f"appendonly yes, appendfsync {fsync}"))
        else:
            results.append(
                Result(
                    "fail",
                    "aof",
                    "appendonly is off: an acknowledged event "
                    "can be lost in a crash; set appendonly yes",
                )
            )
        problem = eviction_problem(connection)
        if problem is None:
            results.append(Result("ok", "maxmemory", "maxmemory-policy noeviction"))
        elif allow_eviction:
            results.append(Result("warn", "maxmemory", f"{problem} (overridden)"))
        else:
            results.append(Result("fail", "maxmemory", problem))
        marks = marks or MemoryMarks()
        memory = memory_state(connection, marks)
        level = "ok" if memory.admitting else "fail"
        detail = memory.describe()
        if memory.high_water is None:
            level = "warn"  # no maxmemory: Redis grows until the host runs out
        elif marks.high_fraction is None and marks.headroom > memory.maxmemory // 2:
            level = "warn" if level == "ok" else level  # the mark is clamped at half
            detail += (
                f": maxmemory is less than twice the headroom of {marks.headroom_jobs} jobs "
                "in flight (WABAHOOKS_MEMORY_HEADROOM_JOBS): give Redis more memory"
            )
        results.append(Result(level, "memory", detail))
        return results
    except redis.RedisError as exc:
        return [Result("fail", "redis", f"{safe_url(url)} answered an error: {exc}")]
    finally:
        connection.close()


def check_portal(env: Mapping[str, str], secrets: Sequence[str]) -> list[Result]:
    """Check that the portal answers with the key, and signs with a secret we accept."""
    from service.portal import PortalClient, PortalError, PortalSettings
    from service.portal.backoff import RetryPolicy

    if not (env.get("WABA_API_URL") or env.get("WABA_API_KEY")):
        return [
            Result(
                "warn",
                "portal",
                "WABA_API_URL is not set: handlers cannot call the portal (fine if none does)",
            )
        ]
    try:
        settings = replace(PortalSettings.from_env(env), read_timeout=10)
    except ConfigError as exc:
        return [Result("fail", "portal", str(exc))]
    try:
        with PortalClient(settings, retry=RetryPolicy(max_attempts=1)) as portal:
            webhook = portal.webhook()
    except PortalError as exc:
        return [Result("fail", "portal", f"GET {settings.api_url}/webhook: {exc}")]
    results = [Result("ok", "portal", f"{settings.api_url} answers with the key")]
    if not (webhook.enabled and webhook.webhook_url):
        results.append(
            Result(
                "warn",
                "webhook",
                "not enabled at the portal: wabahooks webhook set https://…/webhook",
            )
        )
    else:
        results.append(
            Result("ok", "webhook", f"delivers {','.join(webhook.events)} to {webhook.webhook_url}")
        )
    if webhook.webhook_secret and secrets and webhook.webhook_secret not in secrets:
        results.append(
            Result(
                "fail",
                "signing",
                "the portal signs with a secret that is not "
                "in WABA_WEBHOOK_SECRET: every delivery would get 401",
            )
        )
    return results


#: Checks other packages add to ``wabahooks check`` (``workers``: the handler configuration).
CHECKS_GROUP = "wabahooks.checks"


def plugin_checks(env: Mapping[str, str]) -> list[Result]:
    """Run the checks of the ``wabahooks.checks`` entry points (each: ``env`` -> results)."""
    from importlib.metadata import entry_points

    results: list[Result] = []
    for ep in sorted(entry_points(group=CHECKS_GROUP), key=lambda e: e.name):
        results += ep.load()(env)
    return results


def run_checks(env: Mapping[str, str]) -> list[Result]:
    """Run every check against ``env``; return the results in order."""
    given = parse_secrets(env.get("WABA_WEBHOOK_SECRET", ""))
    results: list[Result] = []
    settings: Settings | None = None
    try:
        settings = Settings.from_env(env)
        results.append(Result("ok", "settings", "every variable parses"))
    except ConfigError as exc:
        results.append(Result("fail", "settings", str(exc)))
    if given:
        rotating = f" ({len(given)} while rotating)" if len(given) > 1 else ""
        results.append(Result("ok", "secret", f"WABA_WEBHOOK_SECRET is set{rotating}"))
    else:
        results.append(
            Result(
                "fail",
                "secret",
                "WABA_WEBHOOK_SECRET is not set: the receiver needs the portal's webhook secret",
            )
        )
    results += plugin_checks(env)
    results += check_redis(
        env.get("REDIS_URL", "").strip() or None,
        allow_eviction=settings.allow_eviction if settings else False,
        marks=MemoryMarks.of(settings) if settings else None,
    )
    results += check_portal(env, given)
    return results


_STYLE: dict[str, Callable[[str], str]] = {
    "ok": lambda s: click.style(s, fg="green"),
    "warn": lambda s: click.style(s, fg="yellow"),
    "fail": lambda s: click.style(s, fg="red", bold=True),
}


@click.command()
@click.option(
    "--app-dir",
    default=None,
    metavar="DIR",
    help="Import handler modules from DIR too, as `wabahooks worker --app-dir` does.",
)
@click.option(
    "--handlers-only",
    is_flag=True,
    help="Only the handler configuration (no Redis, no portal): for CI, or before a deploy.",
)
def check(app_dir: str | None, handlers_only: bool) -> None:
    """Check the configuration and what it points at; exit 1 if anything fails.

    Settings, WABA_WEBHOOK_SECRET, the handlers (imported and configured exactly as
    `wabahooks worker` will), Redis (reachable, version >= 7.2, AOF on,
    maxmemory-policy noeviction) and, when WABA_API_URL is set, the portal
    (GET /api/v1/webhook with the key; the secret it signs with).
    """
    env = dict(os.environ)
    if app_dir is not None:
        env["WABAHOOKS_APP_DIR"] = app_dir
    results = plugin_checks(env) if handlers_only else run_checks(env)
    width = max(len(r.name) for r in results)
    for result in results:
        click.echo(
            f"{_STYLE[result.level](result.level.ljust(4))}  "
            f"{result.name.ljust(width)}  {result.detail}"
        )
    failed = sum(r.level == "fail" for r in results)
    if failed:
        click.echo(f"\n{failed} check(s) failed.", err=True)
        sys.exit(1)
