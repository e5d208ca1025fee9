"""Issue 14, items 1-4: the user's own handler modules, found and checked as the worker will."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.userpath.support import ORDERS, wabahooks, write_project

REDIS_DOWN = "redis://127.0.0.1:1/0"  # nothing listens: loading must come first


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "shop", orders=ORDERS)


def test_the_worker_imports_handlers_from_the_current_directory(
    project: Path, redis_url: str
) -> None:
    result = wabahooks(
        project, "worker", "--burst", REDIS_URL=redis_url, WABAHOOKS_HANDLERS="myapp.orders"
    )

    assert result.returncode == 0, result.stderr
    assert '"handlers":["orders:confirm"]' in result.stdout


def test_app_dir_and_its_variable_name_another_directory(project: Path, redis_url: str) -> None:
    elsewhere = project.parent

    by_option = wabahooks(
        elsewhere,
        "worker",
        "--burst",
        "--app-dir",
        str(project),
        REDIS_URL=redis_url,
        WABAHOOKS_HANDLERS="myapp.orders",
    )
    by_variable = wabahooks(
        elsewhere,
        "worker",
        "--burst",
        REDIS_URL=redis_url,
        WABAHOOKS_HANDLERS="myapp.orders",
        WABAHOOKS_APP_DIR=str(project),
    )
    missing = wabahooks(
        elsewhere, "worker", "--burst", REDIS_URL=redis_url, WABAHOOKS_HANDLERS="myapp.orders"
    )

    assert by_option.returncode == 0, by_option.stderr
    assert by_variable.returncode == 0, by_variable.stderr
    assert missing.returncode == 2


def test_a_module_that_is_not_there_is_one_line_with_the_path_and_the_fix(project: Path) -> None:
    result = wabahooks(project, "worker", REDIS_URL=REDIS_DOWN, WABAHOOKS_HANDLERS="myapp.ordrs")

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "no module named 'myapp.ordrs'" in line
    assert str(project) in line  # the path searched
    assert "--app-dir" in line and "WABAHOOKS_APP_DIR" in line  # the fix


def test_an_error_inside_the_module_shows_its_traceback_not_not_found(project: Path) -> None:
    (project / "myapp" / "broken.py").write_text("import json\n\nVALUE = json.loads('{')\n")

    result = wabahooks(project, "worker", REDIS_URL=REDIS_DOWN, WABAHOOKS_HANDLERS="myapp.broken")

    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert 'myapp/broken.py", line 3' in result.stderr
    assert "no module named" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "importing 'myapp.broken' raised JSONDecodeError" in last and "line 3" in last
    assert "site-packages/click" not in result.stderr  # our frames are not the user's concern


def test_a_missing_dependency_of_the_module_is_its_error_not_the_module_missing(
    project: Path,
) -> None:
    (project / "myapp" / "needs.py").write_text("import a_library_nobody_installed\n")

    result = wabahooks(project, "worker", REDIS_URL=REDIS_DOWN, WABAHOOKS_HANDLERS="myapp.needs")

    assert result.returncode == 2
    assert "No module named 'a_library_nobody_installed'" in result.stderr
    assert "importing 'myapp.needs' raised ModuleNotFoundError" in result.stderr


def test_a_worker_with_no_handlers_refuses_unless_told(project: Path, redis_url: str) -> None:
    refused = wabahooks(project, "worker", "--burst", REDIS_URL=redis_url)
    allowed = wabahooks(project, "worker", "--burst", "--allow-no-handlers", REDIS_URL=redis_url)
    by_variable = wabahooks(
        project, "worker", "--burst", REDIS_URL=redis_url, WABAHOOKS_ALLOW_NO_HANDLERS="1"
    )

    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "no handlers to run" in line and "WABAHOOKS_HANDLERS" in line
    assert "--allow-no-handlers" in line
    assert allowed.returncode == 0, allowed.stderr
    assert by_variable.returncode == 0, by_variable.stderr


def test_modules_listed_in_the_toml_load_and_the_variable_overrides_them(
    project: Path, redis_url: str
) -> None:
    (project / "myapp" / "other.py").write_text(
        "from workers import Router\nrouter = Router('other')\n"
        "@router.message()\ndef anything(event, ctx): pass\n"
    )
    (project / "wabahooks.toml").write_text(
        '[handlers]\nmodules = ["myapp.orders"]\n\n[handlers.orders]\nreply = "Noted!"\n'
    )

    from_file = wabahooks(project, "worker", "--burst", REDIS_URL=redis_url)
    overridden = wabahooks(
        project,
        "worker",
        "--burst",
        REDIS_URL=redis_url,
        WABAHOOKS_HANDLERS="myapp.other",
        WABAHOOKS_ALLOW_NO_HANDLERS="0",
    )

    assert from_file.returncode == 0, from_file.stderr
    assert '"handlers":["orders:confirm"]' in from_file.stdout
    # The variable wins, so [handlers.orders] is now a section nothing reads: refused.
    assert overridden.returncode == 2
    assert "handlers.orders" in overridden.stderr


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[handlers.mark_raed]\n", "handlers.mark_raed: no built-in or loaded router is named"),
        ("[handlers.order]\nreply = 'x'\n", "did you mean 'orders'?"),
        ("[handlers]\nmodules = 'myapp.orders'\n", "handlers.modules: must be a list"),
        # A misspelt top-level table would silently turn its feature off (STOP not honoured).
        ("[polcy.optout]\n", "polcy: unknown table; did you mean 'policy'?"),
        ("[agent]\nnumbers = []\n", "agent: unknown table; did you mean 'agents'?"),
        ("[handler.orders]\nreply = 'x'\n", "handler: unknown table; did you mean 'handlers'?"),
        ("[policy.optuot]\n", "policy.optuot: unknown key; did you mean 'optout'?"),
    ],
)
def test_typos_in_the_toml_are_errors_naming_the_known_sections(
    project: Path, toml: str, says: str
) -> None:
    (project / "wabahooks.toml").write_text(toml)

    worker = wabahooks(project, "worker", REDIS_URL=REDIS_DOWN, WABAHOOKS_HANDLERS="myapp.orders")
    check = wabahooks(project, "check", "--handlers-only", WABAHOOKS_HANDLERS="myapp.orders")

    assert worker.returncode == 2
    [line] = worker.stderr.strip().splitlines()
    assert says in line
    if toml.startswith("[handlers."):
        assert "known: auto_reply, forward, mark_read, orders, status_tracking" in line
    assert check.returncode == 1
    assert says in check.stdout


def test_check_imports_the_handlers_as_the_worker_will(project: Path) -> None:
    ok = wabahooks(project, "check", "--handlers-only", WABAHOOKS_HANDLERS="myapp.orders")
    full = wabahooks(project, "check", WABAHOOKS_HANDLERS="myapp.orders")
    missing = wabahooks(project, "check", "--handlers-only", WABAHOOKS_HANDLERS="myapp.nope")
    nothing = wabahooks(project, "check", "--handlers-only")

    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok    handlers  orders (1 handler) from myapp.orders" in ok.stdout
    assert "handlers  orders (1 handler)" in full.stdout  # among the other checks
    assert missing.returncode == 1 and "no module named 'myapp.nope'" in missing.stdout
    assert nothing.returncode == 1 and "no handlers to run" in nothing.stdout


def test_handler_names_in_logs_read_as_written(project: Path, redis_url: str) -> None:
    (project / "wabahooks.toml").write_text("[handlers.mark_read]\n")

    result = wabahooks(project, "worker", "--burst", REDIS_URL=redis_url)

    assert result.returncode == 0, result.stderr
    assert '"handlers":["mark_read:mark_read"]' in result.stdout
    assert "<locals>" not in result.stdout
