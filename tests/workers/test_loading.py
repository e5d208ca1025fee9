"""Finding handler modules: WABAHOOKS_HANDLERS items, module:router, and clear failures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.loading import (
    HandlerImportFailed,
    HandlerLoadError,
    HandlerNotFound,
    load_routers,
    registrations,
)


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding small handler modules."""
    (tmp_path / "shop_handlers.py").write_text(
        "from workers import Router\n"
        "router = Router('shop')\n"
        "@router.message(text='hi')\n"
        "def hi(event, ctx): pass\n"
        "support = Router('support')\n"
        "@support.message()\n"
        "def any_message(event, ctx): pass\n"
    )
    (tmp_path / "no_router.py").write_text("x = 1\n")
    (tmp_path / "broken_handlers.py").write_text("import not_a_real_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("shop_handlers", "no_router", "broken_handlers"):
        sys.modules.pop(name, None)


def test_modules_and_named_routers_load_in_the_order_listed(modules: Path) -> None:
    routers = load_routers("shop_handlers:support, shop_handlers", use_entry_points=False)

    assert [r.name for r in routers] == ["support", "shop"]
    assert [r.name for r in registrations(routers)] == ["support:any_message", "shop:hi"]


def test_a_module_that_fails_to_import_keeps_its_own_error(modules: Path) -> None:
    with pytest.raises(HandlerImportFailed, match="not_a_real_module_anywhere") as raised:
        load_routers("broken_handlers", use_entry_points=False)

    assert isinstance(raised.value.__cause__, ModuleNotFoundError)
    assert "broken_handlers.py" in raised.value.details


def test_a_module_that_is_not_there_is_not_found(modules: Path) -> None:
    with pytest.raises(HandlerNotFound, match="no module named 'shop_handlerz'"):
        load_routers("shop_handlerz", use_entry_points=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_router", "has no `router`"),
        ("no_router:x", "expected a workers.Router, got int"),
        ("shop_handlers:nope", "no 'nope'"),
        ("shop_handlers, shop_handlers", "used twice: shop"),
    ],
)
def test_misconfiguration_says_what_is_wrong(modules: Path, spec: str, message: str) -> None:
    with pytest.raises(HandlerLoadError, match=message):
        load_routers(spec, use_entry_points=False)


def test_nothing_configured_is_no_handlers() -> None:
    assert load_routers("", use_entry_points=False) == []


def test_installed_packages_add_routers_through_entry_points(modules: Path) -> None:
    dist = modules / "shop_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shop-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[wabahooks.handlers]\nb_support = shop_handlers:support\na_shop = shop_handlers\n"
    )

    routers = load_routers("")

    assert [r.name for r in routers] == ["shop", "support"]  # by entry-point name


def test_the_worker_refuses_to_start_when_a_handler_module_fails_to_import(
    modules: Path, redis_url: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "service", "worker", "--burst"],
        env={
            **os.environ,
            "PYTHONPATH": f"{modules}:{root}",
            "REDIS_URL": redis_url,
            "WABAHOOKS_HANDLERS": "shop_handlers, broken_handlers",
        },
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "ModuleNotFoundError: No module named 'not_a_real_module_anywhere'" in result.stderr
