"""Finding handler modules: ``WABAHOOKS_HANDLERS`` and the ``wabahooks.handlers`` entry points.

``WABAHOOKS_HANDLERS`` is a comma-separated list; each item is a module path whose
``router`` attribute is a :class:`~workers.router.Router` (``myapp.handlers``), or
``module:attribute`` naming the router (``myapp.handlers:support_router``).

An installed package adds its own through the entry-point group
``wabahooks.handlers``; each entry point names a Router object
(``myhandlers = "myapp.handlers:router"``) or a module with a ``router``.

Order: what ``WABAHOOKS_HANDLERS`` lists, in order, then entry points by name.

A module that is not there raises :class:`HandlerNotFound` (one line: the module, where it
was looked for, how to fix it); a module that raises while importing raises
:class:`HandlerImportFailed`, which keeps the module's own traceback (its frames only) for
the user. Both are configuration errors (``ConfigError``: exit status 2).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from service.settings import ConfigError
from workers.router import Registration, Router

__all__ = [
    "HandlerImportFailed",
    "HandlerLoadError",
    "HandlerNotFound",
    "load_routers",
    "registrations",
]

ENTRY_POINT_GROUP = "wabahooks.handlers"


class HandlerLoadError(ConfigError):
    """A configured handler module or router could not be loaded."""


class HandlerNotFound(HandlerLoadError):
    """A handler module (or a package above it) is not on the import path."""


class HandlerImportFailed(HandlerLoadError):
    """A handler module raised while importing; ``details`` is its traceback (its frames)."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


def _searched() -> str:
    """The directories a handler module was looked for in, site-packages summarised."""
    dirs = [d for d in sys.path if d and "site-packages" not in d and os.path.isdir(d)]
    local = [d for d in dirs if not d.startswith((sys.base_prefix, sys.prefix))]
    return ", ".join([*dict.fromkeys(local), "the installed packages"])


def _import(module_name: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise HandlerNotFound(
                f"{origin}: no module named {missing!r} (searched: {_searched()}); run from "
                f"the directory that holds it, pass --app-dir DIR (WABAHOOKS_APP_DIR), "
                f"or pip install the package that provides it"
            ) from None
        raise _import_failed(module_name, origin, exc) from exc
    except Exception as exc:
        raise _import_failed(module_name, origin, exc) from exc


def _import_failed(module_name: str, origin: str, exc: BaseException) -> HandlerImportFailed:
    """Describe an error raised inside a handler module, with its frames (not importlib's)."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen")
        and frame.filename != __file__
        and "importlib" not in Path(frame.filename).parts
    ]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    details = (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(frames))
        + "".join(traceback.format_exception_only(exc))
    )
    return HandlerImportFailed(
        f"{origin}: importing {module_name!r} raised {type(exc).__name__}: {exc}{where}: "
        "fix the module",
        details,
    )


def _router_of(obj: Any, origin: str) -> Router:
    if isinstance(obj, ModuleType):
        obj = getattr(obj, "router", None)
        if obj is None:
            raise HandlerLoadError(
                f"{origin}: the module has no `router`; name it as module:attribute"
            )
    if not isinstance(obj, Router):
        raise HandlerLoadError(f"{origin}: expected a workers.Router, got {type(obj).__name__}")
    return obj


def _load_spec(spec: str) -> Router:
    module_name, _, attribute = spec.partition(":")
    module = _import(module_name, f"handler module {spec!r}")
    if not attribute:
        return _router_of(module, f"handler module {spec!r}")
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise HandlerLoadError(f"handler module {spec!r}: no {attribute!r}") from None
    return _router_of(obj, f"handler module {spec!r}")


def load_routers(specs: str | Sequence[str] = "", *, use_entry_points: bool = True) -> list[Router]:
    """Return the configured routers in dispatch order; raise on the first that fails."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    routers = [_load_spec(item.strip()) for item in items if item.strip()]
    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = f"entry point {ep.name!r} ({ep.value})"
            try:
                loaded = ep.load()
            except Exception as exc:
                raise _import_failed(ep.module, origin, exc) from exc
            routers.append(_router_of(loaded, origin))
    names = [r.name for r in routers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise HandlerLoadError(f"router names must be unique; used twice: {', '.join(duplicates)}")
    return routers


def registrations(routers: Iterable[Router]) -> list[Registration]:
    """Return every registration of ``routers``, in dispatch order."""
    return [registration for router in routers for registration in router]
