"""``wabahooks check``'s handler check: load the handlers exactly as ``wabahooks worker`` will.

``service`` never imports ``workers``: ``check`` finds this function through the entry-point
group ``wabahooks.checks`` (see ``pyproject.toml``). It imports the handler modules from the
same directories (the current one, ``WABAHOOKS_APP_DIR``), validates the configuration file
and every ``[handlers.X]`` section, and applies the worker's rule that nothing to run is an
error unless ``WABAHOOKS_ALLOW_NO_HANDLERS`` says it is intended.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.cli.check import Result
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
    if not any(len(router) for router in handlers.routers):
        return [Result("warn", "handlers", f"none (allowed by {ALLOW_NONE_ENV})")]
    where = f" (imported from {', '.join(app_dirs(env))})" if handlers.user_routers else ""
    return [Result("ok", "handlers", f"{handlers.describe()}{where}")]


def watch_paths(env: Mapping[str, str]) -> dict[str, list[str]]:
    """What ``wabahooks dev`` watches to reload the workers: the packages (recursively) and
    single-file modules of the user's handlers found in the app directories, and the
    configuration file. Imports the handlers (call it in a process of its own)."""
    import sys
    from pathlib import Path

    from workers.config import DEFAULT_CONFIG_FILE

    dirs = [Path(d) for d in app_dirs(env)]
    packages: set[str] = set()
    files: set[str] = set()
    try:
        handlers = load_handlers(env)
    except ConfigError:
        handlers = None
    modules = {
        reg.func.__module__ for r in (handlers.user_routers if handlers else []) for reg in r
    }
    for name in modules:
        top = sys.modules.get(name.split(".")[0])
        origin = Path(getattr(top, "__file__", None) or "/")
        if not any(origin.is_relative_to(d) for d in dirs):
            continue  # an installed package: not the user's to edit
        if origin.name == "__init__.py":
            packages.add(str(origin.parent))
        else:
            files.add(str(origin))
    config = Path(env.get("WABAHOOKS_CONFIG", "").strip() or DEFAULT_CONFIG_FILE)
    files.add(str(config.resolve()))
    # Modules that failed to import cannot be found: watch the app directories' packages.
    if handlers is None:
        for d in dirs:
            packages.update(str(p.parent) for p in d.glob("*/__init__.py"))
            files.update(str(p) for p in d.glob("*.py"))
    return {"packages": sorted(packages), "files": sorted(files)}


def main() -> None:
    """``python -m workers.handlercheck``: the handler check and the paths to watch, as JSON
    (``wabahooks dev`` runs it in a fresh process before each start of the workers)."""
    import json
    import os

    [result] = check_handlers(os.environ)
    paths = watch_paths(os.environ)
    print(json.dumps({"level": result.level, "detail": result.detail, **paths}))


if __name__ == "__main__":
    main()
