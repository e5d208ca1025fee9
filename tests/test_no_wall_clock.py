"""No test waits for a conversation's timer in real time: every burst window and step timeout
declared under ``tests/`` is at least an hour, so none falls due by itself while a busy machine
runs the test.

Tests move time themselves: on the Harness's clock (``advance``), or by making a scheduled flush
or timeout due in Redis (``tests.support.workers.make_due``, then a promote). The check reads
the tests' source with ``ast``: every ``Window(...)`` call (``quiet`` and ``max_wait``, given or
Window's defaults) and every ``….expect(..., timeout=...)`` call (a step: ``ctx.expect``,
``ctx.conversation.expect``, a conversation store's). A value is a number, a ``timedelta(...)``,
arithmetic on those, or a module-level name bound to one; anything else is reported as well,
since it cannot be checked. Other ``timeout=`` arguments (HTTP clients, ``wait_for``) are not
timers of a conversation and are left alone. Windows and steps are declared in Python only (no
TOML setting makes one), so the tests' TOML texts need no reading.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

from workers.coalesce import Window

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: The shortest burst window or step timeout a test may declare, in seconds.
SHORTEST = 3600

_WINDOW_FIELDS = [field.name for field in dataclasses.fields(Window)]  # positional order
_WINDOW_DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in dataclasses.fields(Window)
}
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
}


class _Unreadable(Exception):
    """A value this check cannot compute (its source text is the message)."""


def _name(func: ast.expr) -> str | None:
    """The called name: ``Window`` for ``Window(…)`` and ``coalesce.Window(…)`` alike."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _seconds(node: ast.expr, names: dict[str, ast.expr], seen: frozenset[str]) -> float:
    """Return ``node``'s value in seconds, or raise :class:`_Unreadable`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if not isinstance(node.value, bool):
            return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _seconds(node.operand, names, seen)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _seconds(node.left, names, seen), _seconds(node.right, names, seen)
        return float(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.Name) and node.id in names and node.id not in seen:
        return _seconds(names[node.id], names, seen | {node.id})
    if isinstance(node, ast.Call) and _name(node.func) in ("float", "int") and not node.keywords:
        if len(node.args) == 1:
            return _seconds(node.args[0], names, seen)
    if isinstance(node, ast.Call) and _name(node.func) == "timedelta":
        if all(k.arg is not None for k in node.keywords):
            args = [_seconds(a, names, seen) for a in node.args]
            kwargs = {str(k.arg): _seconds(k.value, names, seen) for k in node.keywords}
            try:
                return timedelta(*args, **kwargs).total_seconds()
            except TypeError as exc:
                raise _Unreadable(ast.unparse(node)) from exc
    raise _Unreadable(ast.unparse(node))


def _module_names(tree: ast.Module) -> dict[str, ast.expr]:
    """The module's top-level ``NAME = value`` bindings (the last one wins)."""
    names: dict[str, ast.expr] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name):
            names[target.id] = value
    return names


def _timers(call: ast.Call) -> list[tuple[str, ast.expr | float]]:
    """The timers ``call`` declares, as (what, its expression or a default's value)."""
    name = _name(call.func)
    given = {k.arg: k.value for k in call.keywords if k.arg is not None}
    if name == "Window":
        if any(k.arg is None for k in call.keywords) or any(
            isinstance(a, ast.Starred) for a in call.args
        ):
            return [("Window(…)", call)]  # **options or *args: not readable here
        given.update(zip(_WINDOW_FIELDS, call.args, strict=False))
        found: list[tuple[str, ast.expr | float]] = []
        for field in ("quiet", "max_wait"):
            if field in given:
                found.append((f"Window {field}", given[field]))
            else:
                found.append((f"Window {field} (the default)", float(_WINDOW_DEFAULTS[field])))
        return found
    if name == "expect" and isinstance(call.func, ast.Attribute) and "timeout" in given:
        return [("step timeout", given["timeout"])]
    return []


def short_timers(source: str, where: str) -> list[str]:
    """Return ``"where:line: …"`` for each burst window or step timeout in ``source`` that is
    shorter than :data:`SHORTEST` seconds, or that this check cannot read."""
    tree = ast.parse(source, filename=where)
    names = _module_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for what, value in _timers(node):
            try:
                seconds = value if isinstance(value, float) else _seconds(value, names, frozenset())
            except _Unreadable as exc:
                found.append(
                    (
                        node.lineno,
                        f"{what} = {exc}: not readable by this check "
                        "(use a number, a timedelta or a module-level constant)",
                    )
                )
                continue
            if seconds < SHORTEST:
                found.append((node.lineno, f"{what} = {seconds:g} s, under {SHORTEST} s"))
    # ast.walk goes breadth first: report in line order (stable within a line).
    return [f"{where}:{line}: {text}" for line, text in sorted(found, key=lambda f: f[0])]


def test_no_burst_window_or_step_timeout_in_the_tests_is_under_an_hour() -> None:
    found = [
        finding
        for path in sorted(TESTS.rglob("*.py"))
        for finding in short_timers(
            path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()
        )
    ]
    assert not found, (
        "a burst window or step timeout this short falls due by itself on a busy machine: "
        f"make it at least {SHORTEST} s and fire it from the test (Harness.advance, or "
        "tests.support.workers.make_due)\n" + "\n".join(found)
    )


def test_the_check_reports_short_windows_and_step_timeouts_and_nothing_else() -> None:
    snippet = textwrap.dedent(
        """\
        HOUR = 3600
        WAIT = timedelta(hours=1)

        @router.message(coalesce=Window(quiet=2, max_wait=10))
        async def on_burst(burst, ctx):
            await ctx.expect("n", timeout=timedelta(minutes=1))
            await ctx.expect("n", timeout=WAIT)
            ctx.conversation.expect("n", timeout=HOUR / 2)
            Window()
            coalesce.Window(HOUR, 30)
            Window(quiet=HOUR, max_wait=2 * HOUR, max_messages=2)
            Window(quiet=settings.quiet, max_wait=HOUR)
            wait_for(lambda: done, "the flush", timeout=60)
            httpx.Client(timeout=30)
            proc.wait(timeout=5)
        """
    )

    assert short_timers(snippet, "t.py") == [
        "t.py:4: Window quiet = 2 s, under 3600 s",
        "t.py:4: Window max_wait = 10 s, under 3600 s",
        "t.py:6: step timeout = 60 s, under 3600 s",
        "t.py:8: step timeout = 1800 s, under 3600 s",
        "t.py:9: Window quiet (the default) = 5 s, under 3600 s",
        "t.py:9: Window max_wait (the default) = 15 s, under 3600 s",
        "t.py:10: Window max_wait = 30 s, under 3600 s",
        "t.py:12: Window quiet = settings.quiet: not readable by this check "
        "(use a number, a timedelta or a module-level constant)",
    ]
