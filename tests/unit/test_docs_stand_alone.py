"""The README, docs/ and BENCHMARKS.md (which they link to) stand alone: every link stays
inside the repository and leads to a file (and a heading) that exists, and no internal issue
number is left in the text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_ISSUE = re.compile(r"\bissues?\s+#?\d+|(?<![\w&/])#\d+\b", re.I)


def _prose(path: Path) -> str:
    """The text outside fenced code blocks."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> set[str]:
    """The heading anchors a Markdown renderer makes of `path` (lowercase, punctuation
    dropped, spaces to hyphens)."""
    headings = re.findall(r"^#+ (.+)$", _prose(path), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _broken(document: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in _LINK.findall(_prose(document)):
        where, _, anchor = target.partition("#")
        if re.match(r"^[a-z][a-z0-9+.-]*:", where):
            broken.append(f"{target}: leaves the repository")
            continue
        path = (document.parent / where).resolve() if where else document
        if not path.is_relative_to(root) or not path.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_in_the_repository_and_leads_somewhere(document: Path) -> None:
    assert not _broken(document)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_issue_number_is_named(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    assert not _ISSUE.findall(text), _ISSUE.findall(text)


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    assert _ISSUE.findall("as issue 14 asked, see #12") == ["issue 14", "#12"]
    assert not _ISSUE.findall("a `#!/bin/sh` line, 50 ms p99, &#39;")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text("# The picture\n", encoding="utf-8")
    (tmp_path.parent / "elsewhere.md").write_text("outside\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "## Two words\n\n```\n# not a heading\n```\n[a](#two-words) [b](design.md#the-picture)"
        " [c](https://example.com) [d](../../elsewhere.md) [g](../nothing.md)"
        " [e](#nope) [f](design.md#nope)\n",
        encoding="utf-8",
    )
    assert _anchors(page) == {"two-words"}
    assert _broken(page, tmp_path) == [
        "https://example.com: leaves the repository",
        "../../elsewhere.md: no such file in the repository",
        "../nothing.md: no such file in the repository",
        "#nope: no such heading",
        "design.md#nope: no such heading",
    ]
