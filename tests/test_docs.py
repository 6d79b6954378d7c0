"""The documentation's links lead somewhere: every relative link in the README, ``docs/`` and the
benchmarks' reports names a file that exists and, where it names a heading, a heading that
exists (GitHub's anchors). The README points into ``docs/RESULTS.md`` for every measurement, so a
renamed heading there would otherwise break the README silently."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                    *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks" / "results").rglob("*.md")])
FENCE = re.compile(r"```.*?```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings: link text kept, punctuation dropped, spaces to
    hyphens, lower case; a repeated heading gets ``-1``, ``-2``, ... ."""
    found, seen = set(), {}
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(document: Path) -> list[str]:
    """The relative links of ``document`` whose file or heading does not exist."""
    broken = []
    for target in LINK.findall(FENCE.sub("", document.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        destination = (document.parent / name).resolve() if name else document
        if not destination.exists():
            broken.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in anchors(
                destination.read_text(encoding="utf-8")):
            broken.append(target)
    return broken


def test_anchors_follow_githubs_rules():
    markdown = ("# Where it stands (measured; [the frontier](#x))\n## Today's recipe: cutmix\n"
                "## Today's recipe: cutmix\n```\n# not a heading\n```\n")
    assert anchors(markdown) == {"where-it-stands-measured-the-frontier",
                                 "todays-recipe-cutmix", "todays-recipe-cutmix-1"}


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "other.md").write_text("# Kept heading\n")
    document = tmp_path / "doc.md"
    document.write_text("[ok](other.md#kept-heading) [gone](missing.md) "
                        "[renamed](other.md#old-heading) [here](#top) [web](https://x.org)\n# Top\n")
    assert broken_links(document) == ["missing.md", "other.md#old-heading"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    assert broken_links(document) == []
