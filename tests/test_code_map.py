"""The README's code map names every module of the tree, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "workers")


def _code_map() -> dict[str, set[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Code map", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for item in re.split(r"\n- ", section):
        head = re.match(r"`([\w/]+/)`", item.strip().removeprefix("- "))
        if head:
            listed[head.group(1)] = set(re.findall(r"`([\w.]+\.py)`", item))
    return listed


def test_every_module_is_in_the_readme_code_map() -> None:
    listed = _code_map()
    for package in PACKAGES:
        for folder in [
            ROOT / package,
            *sorted(p for p in (ROOT / package).iterdir() if p.is_dir()),
        ]:
            modules = {
                p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
            }
            if not modules:
                continue
            key = f"{folder.relative_to(ROOT).as_posix()}/"
            assert key in listed, f"README code map: no entry for {key}"
            assert modules - listed[key] == set(), f"{key}: modules missing from the README"
            assert listed[key] - modules - {"__init__.py"} == set(), f"{key}: listed, not found"
