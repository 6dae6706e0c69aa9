"""Saving the examples' figures for the documentation, with the size of their text.

A figure is a PNG: the page that shows it cannot read its fonts. So each figure records
the size of its smallest text, in points, in a PNG text chunk (``TEXT_SIZE``), beside the
resolution matplotlib records (the ``pHYs`` chunk, the figure's dpi). A point is
``dpi / 72`` pixels of the PNG; the page shows the PNG at some width, so the smallest
text is ``points * dpi / 72 * shown_width / png_width`` pixels tall on the page.
``tests/test_site_layout.py`` reads both and measures that height in a browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT_SIZE = "Smallest text (pt)"
"""The PNG text chunk holding the size of the figure's smallest visible text, in points."""


def smallest_text(fig: Any) -> float:
    """The font size, in points, of the smallest visible, non-empty text of ``fig``
    (panel titles, the figure's title, labels, ticks, legends)."""
    from matplotlib.text import Text

    sizes = [
        float(text.get_fontsize())
        for text in fig.findobj(Text)
        if text.get_visible() and text.get_text().strip()
    ]
    if not sizes:
        raise ValueError("fig: expected a figure with some text, got none")
    return min(sizes)


def save(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Save ``fig`` as a PNG at ``dpi``, cropped to its content, recording its smallest
    text size (``TEXT_SIZE``)."""
    metadata = {TEXT_SIZE: f"{smallest_text(fig):g}"}
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
    return path
