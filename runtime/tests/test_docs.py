"""The documentation holds together: the README is a short front page, every document under docs/ is
reachable from it, and no link points at a file that is not there."""

from __future__ import annotations

import re

import pytest

from runtime.settings import PROJECT_ROOT

DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(path) -> list[str]:
    return [
        target.split("#", 1)[0]
        for target in LINK.findall(path.read_text())
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("path", [PROJECT_ROOT / "README.md", *DOCS], ids=lambda path: path.name)
def test_every_relative_link_resolves(path):
    missing = [target for target in relative_links(path) if not (path.parent / target).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"


def test_the_readme_is_a_front_page_that_reaches_every_document():
    readme = PROJECT_ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 120, "the details belong in docs/"
    linked = {target for target in relative_links(readme) if target.startswith("docs/")}
    assert linked == {f"docs/{path.name}" for path in DOCS}
