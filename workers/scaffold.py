"""``wabahooks new handler NAME`` and ``wabahooks new project DIR``: files a user starts from.

``new handler`` writes, into the current directory (the user's project), a handler module
``PACKAGE/NAME.py`` whose router is named NAME, its ``[handlers.NAME]`` section in
``wabahooks.toml`` (and the module in ``handlers.modules``), and its ``Harness`` test
``tests/test_NAME.py``: ``pytest`` passes, ``wabahooks check --handlers-only`` is ok and
``wabahooks dev`` runs it. Nothing existing is overwritten. ``new project DIR`` writes a
minimal repository around one such handler: a Dockerfile ``FROM`` the wabahooks image with
the package and the TOML, a compose file, ``.env.example``, ``pyproject.toml`` for pytest.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click

from workers.config import BUILTINS
from workers.handlerset import MODULES_KEY
from workers.scaffold_templates import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    GITIGNORE,
    HANDLER,
    PYPROJECT,
    README,
    TEST,
)

__all__ = ["new"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _valid_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise click.BadParameter(f"{value!r}: use lower-case letters, digits and _ ({what})")
    return value


def _add_to_toml(path: Path, module: str, name: str) -> str:
    """Return the TOML with ``module`` in ``handlers.modules`` and a ``[handlers.NAME]``
    section; raise ClickException if the file cannot be edited safely."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise click.ClickException(f"{path} is not valid TOML ({exc}): fix it first") from None
    handlers = current.get("handlers", {})
    if name in handlers:
        raise click.ClickException(f"{path} already has [handlers.{name}]")
    listed = handlers.get(MODULES_KEY)
    if listed is None:
        header = re.search(r"(?m)^\[handlers\]\s*$", text)
        if header:
            at = header.end()
            text = f'{text[:at]}\n{MODULES_KEY} = ["{module}"]{text[at:]}'
        else:
            text = f'[handlers]\n{MODULES_KEY} = ["{module}"]\n\n{text}'
    elif module not in listed:
        line = re.search(rf"(?m)^({MODULES_KEY}\s*=\s*\[)([^\]\n]*)\]", text)
        if line is None:
            raise click.ClickException(
                f'add "{module}" to handlers.{MODULES_KEY} in {path} (a multi-line list is '
                "not edited here), then run this again"
            )
        items = line.group(2).rstrip().rstrip(",")
        joined = f'{items}, "{module}"' if items.strip() else f'"{module}"'
        text = f"{text[: line.start()]}{line.group(1)}{joined}]{text[line.end() :]}"
    section = f'\n[handlers.{name}]\nreply = "Thanks {{first_name}}, {name} got your message"\n'
    text = text.rstrip("\n") + "\n" + section if text.strip() else section.lstrip("\n")
    tomllib.loads(text)  # what we wrote parses
    return text


def write_handler(root: Path, name: str, package: str) -> list[Path]:
    """Write the handler, its test and its TOML section under ``root``; return the paths."""
    module = f"{package}.{name}"
    handler = root / package / f"{name}.py"
    test = root / "tests" / f"test_{name}.py"
    for path in (handler, test):
        if path.exists():
            raise click.ClickException(f"{path} exists: pick another name, or remove it first")
    toml = root / "wabahooks.toml"
    new_toml = _add_to_toml(toml, module, name)
    written = []
    init = root / package / "__init__.py"
    if not init.exists():
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text("", encoding="utf-8")
        written.append(init)
    handler.write_text(HANDLER.format(name=name), encoding="utf-8")
    test.parent.mkdir(parents=True, exist_ok=True)
    test.write_text(TEST.format(name=name, module=module), encoding="utf-8")
    toml.write_text(new_toml, encoding="utf-8")
    return [*written, handler, test, toml]


@click.group()
def new() -> None:
    """Start a handler or a project from files that run as they are."""


@new.command("handler")
@click.argument("name")
@click.option("--package", default="myapp", show_default=True, help="The package it goes in.")
def new_handler(name: str, package: str) -> None:
    """Write PACKAGE/NAME.py, its [handlers.NAME] section and tests/test_NAME.py here."""
    _valid_name(name, "it names the router, its section and the ledger")
    _valid_name(package, "a Python package name")
    if name in BUILTINS or name == MODULES_KEY:
        raise click.BadParameter(f"{name!r} is taken by a built-in: pick another name")
    root = Path.cwd()
    for path in write_handler(root, name, package):
        click.echo(f"wrote {path.relative_to(root)}")
    click.echo(
        f"\nNext: python -m pytest tests/test_{name}.py   # its unit test, no Redis needed\n"
        "      wabahooks check --handlers-only             # loads it as the workers will\n"
        "      wabahooks dev                               # runs it; edit, save: reloaded"
    )


@new.command("project")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--package", default="myapp", show_default=True, help="The handler package.")
@click.option("--handler", default="hello", show_default=True, help="The first handler.")
@click.option(
    "--image",
    default="wabahooks:0.1.0",
    show_default=True,
    help="The wabahooks image your Dockerfile builds FROM.",
)
def new_project(directory: Path, package: str, handler: str, image: str) -> None:
    """Write a minimal repository: a handler package and its tests, wabahooks.toml, a
    Dockerfile FROM the wabahooks image, compose.yaml and .env.example."""
    _valid_name(package, "a Python package name")
    _valid_name(handler, "the first handler's name")
    if directory.exists() and any(directory.iterdir()):
        raise click.ClickException(f"{directory} exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "Dockerfile": DOCKERFILE.format(image=image, package=package),
        "compose.yaml": COMPOSE,
        ".env.example": ENV_EXAMPLE,
        ".gitignore": GITIGNORE,
        "pyproject.toml": PYPROJECT.format(name=directory.resolve().name, package=package),
        "README.md": README.format(name=directory.resolve().name, package=package),
    }
    for relative, text in files.items():
        (directory / relative).write_text(text, encoding="utf-8")
    write_handler(directory, handler, package)
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        click.echo(f"wrote {path}")
    click.echo(f"\nNext: cd {directory} && python -m pytest && wabahooks check --handlers-only")
