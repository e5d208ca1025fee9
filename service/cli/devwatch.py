"""What ``wabahooks dev`` watches to restart the workers: the user's handler code and the
configuration file (with watchfiles, which uvicorn's ``--reload`` uses too).

Packages are watched recursively for ``*.py``; single files (a one-file handler module, the
TOML) through their directory, not recursively, so that a project root holding ``.venv``
or ``.wabahooks`` (Valkey's append-only file changes every second) costs one watch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Watcher"]

#: Milliseconds of quiet before a burst of changes (an editor's save, a git checkout) counts.
DEBOUNCE_MS = 400


class Watcher:
    """Collects changed paths in background threads until :meth:`close`."""

    def __init__(self, packages: Iterable[str], files: Iterable[str]) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._threads: list[threading.Thread] = []
        packages = [p for p in packages if Path(p).is_dir()]
        wanted = {str(Path(f)) for f in files}
        parents = sorted({str(Path(f).parent) for f in wanted if Path(f).parent.is_dir()})
        if packages:
            self._spawn(packages, lambda path: path.endswith(".py"), recursive=True)
        if parents:
            self._spawn(parents, lambda path: path in wanted, recursive=False)

    def _spawn(self, paths: list[str], wanted: Callable[[str], bool], recursive: bool) -> None:
        thread = threading.Thread(
            target=self._run, args=(paths, wanted, recursive), daemon=True, name="dev-watch"
        )
        thread.start()
        self._threads.append(thread)

    def _run(self, paths: list[str], wanted: Callable[[str], bool], recursive: bool) -> None:
        from watchfiles import watch

        for changes in watch(
            *paths,
            watch_filter=lambda _change, path: wanted(path),
            debounce=DEBOUNCE_MS,
            stop_event=self._stop,
            recursive=recursive,
            raise_interrupt=False,
        ):
            with self._lock:
                self._changed.update(path for _change, path in changes)

    def take(self) -> set[str]:
        """The paths changed since the last call."""
        with self._lock:
            changed, self._changed = self._changed, set()
        return changed

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=6)
