"""One statement per fact: phrases that once contradicted another page stay out of the docs.

Each entry is a phrase found on one page and the statement elsewhere it contradicted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

CONTRADICTIONS = {
    # Guarantees, NormGrad, Metrics: a constant map has no maximum and points nowhere
    "is the top-left pixel": "a constant map points nowhere (docs/guarantees.md)",
    "maximum is the top-left": "a constant map points nowhere (docs/guarantees.md)",
    # the protocol: bone is often brighter than the objects
    "are their brightest pixels": "bone is often brighter than the objects (docs/protocol.md)",
    # with one sign the Grad-CAM map can be empty: not two differing maps
    "the two signs differ": "one of the two Grad-CAM maps can be empty (docs/recipes.md)",
}


@pytest.mark.parametrize("phrase", sorted(CONTRADICTIONS))
def test_no_page_contradicts_another(phrase: str) -> None:
    found = [  # across line breaks: the words of each page, one space apart
        str(page.relative_to(ROOT))
        for page in PAGES
        if phrase in " ".join(page.read_text(encoding="utf-8").split())
    ]
    assert not found, f"{phrase!r} in {found}: {CONTRADICTIONS[phrase]}"
