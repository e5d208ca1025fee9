"""Finding handler modules: ``WABAHOOKS_HANDLERS`` and the ``wabahooks.handlers`` entry points.

``WABAHOOKS_HANDLERS`` is a comma-separated list; each item is a module path whose
``router`` attribute is a :class:`~workers.router.Router` (``myapp.handlers``), or
``module:attribute`` naming the router (``myapp.handlers:support_router``).

An installed package adds its own through the entry-point group
``wabahooks.handlers``; each entry point names a Router object
(``myhandlers = "myapp.handlers:router"``) or a module with a ``router``.

Order: what ``WABAHOOKS_HANDLERS`` lists, in order, then entry points by name.
A module that fails to import stops start-up with its traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from workers.router import Registration, Router

__all__ = ["HandlerLoadError", "load_routers", "registrations"]

ENTRY_POINT_GROUP = "wabahooks.handlers"


class HandlerLoadError(Exception):
    """A configured handler module or router could not be loaded."""


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
    module = importlib.import_module(module_name)  # ImportError propagates with its traceback
    if not attribute:
        return _router_of(module, f"WABAHOOKS_HANDLERS item {spec!r}")
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise HandlerLoadError(f"WABAHOOKS_HANDLERS item {spec!r}: no {attribute!r}") from None
    return _router_of(obj, f"WABAHOOKS_HANDLERS item {spec!r}")


def load_routers(specs: str | Sequence[str] = "", *, use_entry_points: bool = True) -> list[Router]:
    """Return the configured routers in dispatch order; raise on the first that fails."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    routers = [_load_spec(item.strip()) for item in items if item.strip()]
    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            routers.append(_router_of(ep.load(), f"entry point {ep.name!r} ({ep.value})"))
    names = [r.name for r in routers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise HandlerLoadError(f"router names must be unique; used twice: {', '.join(duplicates)}")
    return routers


def registrations(routers: Iterable[Router]) -> list[Registration]:
    """Return every registration of ``routers``, in dispatch order."""
    return [registration for router in routers for registration in router]
