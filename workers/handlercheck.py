"""``wabahooks check``'s handler check: load the handlers exactly as ``wabahooks worker`` will.

``service`` never imports ``workers``: ``check`` finds this function through the entry-point
group ``wabahooks.checks`` (see ``pyproject.toml``). It imports the handler modules from the
same directories (the current one, ``WABAHOOKS_APP_DIR``), validates the configuration file
and every ``[handlers.X]`` section, and applies the worker's rule that nothing to run is an
error unless ``WABAHOOKS_ALLOW_NO_HANDLERS`` says it is intended.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.admin import Result
from service.settings import ConfigError
from workers.handlerset import ALLOW_NONE_ENV, NoHandlers, app_dirs, load_handlers
from workers.loading import HandlerImportFailed

__all__ = ["check_handlers"]


def check_handlers(env: Mapping[str, str]) -> list[Result]:
    """One result: what the workers will run, or why they will refuse to start."""
    try:
        handlers = load_handlers(env, require=True)
    except NoHandlers as exc:
        return [Result("fail", "handlers", str(exc))]
    except HandlerImportFailed as exc:
        last = exc.details.rstrip().splitlines()[-1] if exc.details.strip() else ""
        return [Result("fail", "handlers", f"{exc} [{last}]" if last not in str(exc) else str(exc))]
    except ConfigError as exc:
        return [Result("fail", "handlers", str(exc))]
    where = ", ".join(app_dirs(env))
    if not any(len(router) for router in handlers.routers):
        return [Result("warn", "handlers", f"none (allowed by {ALLOW_NONE_ENV})")]
    return [Result("ok", "handlers", f"{handlers.describe()} (modules from {where})")]
