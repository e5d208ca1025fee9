"""Every YAML file under deploy/ parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, load_all

YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def test_there_are_yaml_files_to_check() -> None:
    assert len(YAML_FILES) >= 8


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    documents = load_all(path)
    assert documents and all(isinstance(doc, dict) for doc in documents)
