"""Which handlers a worker runs, loaded the one way ``wabahooks worker``, ``check`` and ``dev``
all load them.

Handler modules are imported the way uvicorn finds an app: from the current directory, and
from ``--app-dir DIR`` (``WABAHOOKS_APP_DIR``; several, separated by ``os.pathsep``), both put
first on ``sys.path``, so ``wabahooks worker`` from the installed console script finds
``myapp/orders.py`` next to you as ``python -m`` would.

The modules come from ``WABAHOOKS_HANDLERS`` if it is set, else from ``handlers.modules`` in
the configuration file, so one file can configure a deployment. Every ``[handlers.X]``
section must belong to a built-in or to a loaded router: a typo (``[handlers.mark_raed]``)
is an error naming the known ones, not a section silently ignored. A worker with nothing to
run refuses to start unless told that is intended (``WABAHOOKS_ALLOW_NO_HANDLERS``): a
deployment that forgot its handlers would otherwise acknowledge every event as unhandled.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.settings import ConfigError
from workers import builtins
from workers.config import BUILTINS, DEFAULT_CONFIG_FILE, Config, load_config
from workers.loading import load_routers
from workers.router import Router

__all__ = [
    "ALLOW_NONE_ENV",
    "APP_DIR_ENV",
    "MODULES_KEY",
    "Handlers",
    "NoHandlers",
    "add_app_dirs",
    "load_handlers",
]

APP_DIR_ENV = "WABAHOOKS_APP_DIR"
ALLOW_NONE_ENV = "WABAHOOKS_ALLOW_NO_HANDLERS"
#: ``handlers.modules``: the handler modules, in the configuration file.
MODULES_KEY = "modules"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class NoHandlers(ConfigError):
    """Nothing to run, and nobody said that was intended."""

    def __init__(self) -> None:
        super().__init__(
            "no handlers to run: set WABAHOOKS_HANDLERS=yourpackage.module (or handlers.modules "
            'in wabahooks.toml, e.g. modules = ["myapp.orders"]), or enable a built-in with its '
            "[handlers.NAME] section; a worker meant only to acknowledge events: "
            f"--allow-no-handlers ({ALLOW_NONE_ENV}=1)"
        )


@dataclass(frozen=True)
class Handlers:
    """The loaded configuration and routers (in dispatch order, the built-ins around yours)."""

    config: Config
    routers: list[Router]
    #: The module specs loaded, and where they were listed.
    modules: tuple[str, ...] = ()
    source: str = ""

    @property
    def user_routers(self) -> list[Router]:
        return [r for r in self.routers if r.name not in BUILTINS]

    def describe(self) -> str:
        """One line: what runs, e.g. ``hours (1 handler) from myapp.hours; built-ins: …``."""
        parts = []
        user = self.user_routers
        if user:
            routers = ", ".join(f"{r.name} ({len(r)} handler{'s' * (len(r) != 1)})" for r in user)
            where = f" from {', '.join(self.modules)}" if self.modules else ""
            parts.append(f"{routers}{where}")
        chosen = [r.name for r in self.routers if r.name in BUILTINS]
        if chosen:
            parts.append(f"built-ins: {', '.join(chosen)}")
        return "; ".join(parts) or "none"


def app_dirs(env: Mapping[str, str], app_dir: str | None = None) -> list[str]:
    """The directories handler modules are imported from: ``app_dir`` (else the variable),
    then the current directory, absolute. Of several, those that do not exist are skipped
    (a deployment lists where either of its ways puts the code); one alone must exist."""
    given = app_dir if app_dir is not None else env.get(APP_DIR_ENV, "")
    named = [d for d in given.split(os.pathsep) if d.strip()]
    dirs = [d for d in named if Path(d).is_dir()]
    if named and not dirs:
        raise ConfigError(
            f"{APP_DIR_ENV} (--app-dir) names {given!r}, which is not a directory: "
            "point it at the directory that holds your handler package"
        )
    return list(dict.fromkeys(str(Path(d).resolve()) for d in [*dirs, os.getcwd()]))


def add_app_dirs(env: Mapping[str, str], app_dir: str | None = None) -> list[str]:
    """Put the app directories first on ``sys.path`` (as uvicorn's ``--app-dir``)."""
    dirs = app_dirs(env, app_dir)
    for d in reversed(dirs):
        if d in sys.path:
            sys.path.remove(d)
        sys.path.insert(0, d)
    return dirs


def allow_none(env: Mapping[str, str]) -> bool:
    raw = env.get(ALLOW_NONE_ENV, "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"{ALLOW_NONE_ENV} must be 1 or 0, got {raw!r}")
    return raw in _TRUE


def module_specs(config: Config, env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """The handler modules to load and where they are listed (the variable wins)."""
    listed = config.raw.get("handlers", {}).get(MODULES_KEY)
    if listed is not None and (
        not isinstance(listed, list) or not all(isinstance(m, str) and m.strip() for m in listed)
    ):
        raise ConfigError(
            f"{_config_file(env)}: handlers.{MODULES_KEY}: must be a list of module names, "
            'e.g. modules = ["myapp.orders", "myapp.support:router"]'
        )
    variable = env.get("WABAHOOKS_HANDLERS", "").strip()
    if variable:
        return tuple(s.strip() for s in variable.split(",") if s.strip()), "WABAHOOKS_HANDLERS"
    if listed is None:
        return (), ""
    return tuple(m.strip() for m in listed), f"handlers.{MODULES_KEY}"


def _config_file(env: Mapping[str, str]) -> str:
    return env.get("WABAHOOKS_CONFIG", "").strip() or DEFAULT_CONFIG_FILE


def check_sections(config: Config, routers: Sequence[Router], env: Mapping[str, str]) -> None:
    """Refuse a ``[handlers.X]`` section that no built-in and no loaded router reads."""
    known = sorted({*BUILTINS, *(r.name for r in routers)})
    for key in config.raw.get("handlers", {}):
        if key == MODULES_KEY or key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{_config_file(env)}: handlers.{key}: no built-in or loaded router is named "
            f"{key!r}; {hint}known: {', '.join(known)}"
        )


def load_handlers(
    env: Mapping[str, str] | None = None,
    *,
    app_dir: str | None = None,
    require: bool = False,
) -> Handlers:
    """Load the configuration and the handler modules; raise :class:`ConfigError`.

    ``require``: refuse to run nothing unless ``WABAHOOKS_ALLOW_NO_HANDLERS`` is set (the
    worker's and ``check``'s rule; ``Runtime.from_env`` alone does not apply it)."""
    env = os.environ if env is None else env
    refuse_empty = require and not allow_none(env)
    add_app_dirs(env, app_dir)
    config = load_config(env)
    specs, source = module_specs(config, env)
    user = load_routers(specs)
    reserved = [r.name for r in user if r.name == MODULES_KEY]
    if reserved:
        raise ConfigError(
            f"router name {MODULES_KEY!r} is reserved (handlers.{MODULES_KEY} lists the "
            "handler modules): rename the router"
        )
    routers = builtins.routers(config, user)
    check_sections(config, routers, env)
    if refuse_empty and not any(len(r) for r in routers):
        raise NoHandlers()
    return Handlers(config, routers, specs, source)
