"""The README's handler module and its unit test work as printed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def code_block(first_line: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return str(block)


@pytest.mark.parametrize("module", ["# myapp/hours.py", "# myapp/hours_blocking.py"])
def test_the_readme_handler_and_its_test_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    """Both styles of the handler pass the README's test, as printed."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "hours.py").write_text(code_block(module))
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {}
    try:
        exec(code_block("# tests/test_hours.py"), namespace)  # noqa: S102 - our own README
        namespace["test_answers_opening_hours"]()  # type: ignore[operator]
    finally:
        sys.modules.pop("myapp.hours", None)
        sys.modules.pop("myapp", None)


def test_the_readme_conversation_bot_and_its_test_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order-status bot (bursts, a validated step asked again once, a polite timeout) is
    under 40 lines and passes its README test, as printed."""
    bot = code_block("# myapp/orders.py")
    assert len(bot.splitlines()) < 40
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "orders.py").write_text(bot)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {}
    try:
        exec(code_block("# tests/test_orders.py"), namespace)  # noqa: S102 - our own README
        tests = [name for name in namespace if name.startswith("test_")]
        assert len(tests) == 2
        for name in tests:
            namespace[name]()  # type: ignore[operator]
    finally:
        sys.modules.pop("myapp.orders", None)
        sys.modules.pop("myapp", None)


def test_the_readme_policy_test_runs() -> None:
    """The Harness with the policy (Testing handlers with the policy), as printed."""
    namespace: dict[str, object] = {}
    exec(code_block("# tests/test_complaints.py"), namespace)  # noqa: S102 - our own README
    namespace["test_a_complaint_goes_to_a_person"]()  # type: ignore[operator]
