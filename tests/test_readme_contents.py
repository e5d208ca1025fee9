"""The README's Contents line lists every section (``##``), in order, with working anchors."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_list_every_section_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    sections = re.findall(r"^## (.+)$", outside_code, flags=re.M)
    contents = text.split("**Contents:**", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"\[([^\]]+)\]\(#([^)]+)\)", contents)

    assert [title for title, _ in listed] == sections
    assert all(target == anchor(title) for title, target in listed)


def test_every_relative_link_resolves_in_a_clone() -> None:
    """A link to a file outside the repository (``../shared/…``) is broken for everyone else."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert relative  # the check reads links at all
    missing = [t for t in relative if not (root / t).resolve().is_relative_to(root)]
    missing += [t for t in relative if not (root / t).exists()]
    assert missing == []
