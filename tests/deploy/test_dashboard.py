"""The rq-dashboard we ship is read-only (deploy/dashboard/readonly.py): its pages pass, every
request that could change a job is refused with 405 and says what to use instead. (Checked by
hand against rq-dashboard 0.9.0 itself: GET / 200, POST /job/<id>/delete 405,
GET /requeue/<queue> 405; rq-dashboard is not a dependency of the suite.)"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "dashboard"


def readonly() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readonly", DASHBOARD / "readonly.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(method: str, path: str) -> tuple[str, bytes]:
    seen: list[str] = []

    def app(_environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start("200 OK", [])
        return [b"the dashboard's page"]

    def start_response(status: str, _headers: list[tuple[str, str]]) -> None:
        seen.append(status)

    body = b"".join(
        readonly().ReadOnly(app)({"REQUEST_METHOD": method, "PATH_INFO": path}, start_response)
    )
    return seen[0], body


@pytest.mark.parametrize("path", ["/", "/jobs/wabahooks:messages/failed/1.json", "/workers.json"])
def test_reads_pass(path: str) -> None:
    assert call("GET", path) == ("200 OK", b"the dashboard's page")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/job/abc/delete"),
        ("POST", "/job/abc/requeue"),
        ("POST", "/queue/wabahooks:messages/failed/empty"),
        ("POST", "/queue/wabahooks:messages/compact"),
        ("GET", "/requeue/wabahooks:messages"),  # rq-dashboard's requeue-all answers GET too
        ("DELETE", "/anything"),
    ],
)
def test_every_button_is_refused_saying_what_to_use_instead(method: str, path: str) -> None:
    status, body = call(method, path)
    assert status.startswith("405")
    assert b"read-only" in body and b"wabahooks failed requeue" in body


def test_the_image_runs_the_read_only_entry_point() -> None:
    dockerfile = (DASHBOARD / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY readonly.py" in dockerfile
    entry = next(line for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT"))
    assert "readonly.py" in entry and "rq-dashboard" not in entry
