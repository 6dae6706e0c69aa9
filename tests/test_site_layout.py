"""The built site as a reader sees it: nothing is fetched from another host, every page
fits a 1280 px window (no table or code block wider than the text column, no identifier
broken inside a word), and the text of every figure that records its size is legible there.

The layout tests open each page in headless Chromium (the system's ``chromium`` or
``chromium-headless-shell``; Debian: ``apt-get install chromium-headless-shell``) and are
skipped, saying so, where none is installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
WINDOW = "1280,900"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
# The smallest legible text of a figure on the page: 9 pt at 96 CSS px per inch.
SMALLEST_TEXT_PX = 12.0
# The PNG text chunk in which the examples' figures record the size of their smallest
# text, in points (examples/figures.py writes it).
TEXT_SIZE = "Smallest text (pt)"

# What a page loads (not the links a reader may follow): stylesheets, scripts, images,
# fonts, frames, preconnects, and url(...) / @import in styles.
LOADS = re.compile(
    r"<(?:link|script|img|iframe|source|video|audio)\b[^>]*?\b(?:href|src)=\"(https?:)?//",
    re.I,
)
CSS_LOADS = re.compile(r"(?:url\(\s*['\"]?|@import\s+['\"])(https?:)?//", re.I)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    env = {**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def test_no_page_loads_anything_from_another_host(built: Path) -> None:
    """Closed hospital networks: no font, script or style from the internet."""
    found = []
    for page in _pages(built):
        text = page.read_text(encoding="utf-8")
        found += [f"{page.relative_to(built)}: {m.group(0)}" for m in LOADS.finditer(text)]
        for style in re.findall(r"<style\b.*?</style>", text, re.S):
            found += [f"{page.relative_to(built)}: {m.group(0)}" for m in CSS_LOADS.finditer(style)]
    for sheet in built.rglob("*.css"):
        text = sheet.read_text(encoding="utf-8", errors="replace")
        found += [f"{sheet.relative_to(built)}: {m.group(0)}" for m in CSS_LOADS.finditer(text)]
    assert not found, found


# Run in the page once it is laid out: what sticks out of the text column, and which
# identifier in a table cell wraps other than at a space, a hyphen, a slash or one of the
# breaks javascripts/identifiers.js offers.
MEASURE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const out = {page: document.documentElement.scrollWidth > window.innerWidth, items: []};
  const boxes = ".md-content .md-typeset__scrollwrap, .md-content table, " +
                ".md-content pre > code";
  for (const el of document.querySelectorAll(boxes))
    if (el.scrollWidth > el.clientWidth + 1)
      out.items.push(`${el.tagName} ${el.scrollWidth} px in ${el.clientWidth} px: ` +
                     (el.innerText || "").slice(0, 70).replace(/\\s+/g, " "));
  for (const code of document.querySelectorAll(".md-content td code, .md-content th code"))
    for (const node of code.childNodes) {
      if (node.nodeType !== 3) continue;
      const text = node.textContent, range = document.createRange();
      let top = null;
      for (let i = 0; i < text.length; i++) {
        range.setStart(node, i); range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        if (!rect) continue;
        const y = Math.round(rect.top);
        if (top !== null && y > top + 2 && !/[\\s\\-\\/>]/.test(text[i - 1] || " ") &&
            !/\\s/.test(text[i]))
          out.items.push(`broken inside a word: ${code.textContent} ` +
                         `(${text.slice(0, i)} / ${text.slice(i)})`);
        top = y;
      }
    }
  out.images = [...document.querySelectorAll(".md-content img")].map(img => ({
    src: img.src, natural: img.naturalWidth, shown: img.getBoundingClientRect().width}));
  const pre = document.createElement("pre");
  pre.id = "layout-report";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 200));
</script>"""


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def rendered(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each page laid out at 1280 px: page name -> the report of ``MEASURE`` (or the
    reason it was not measured), and ``"site"`` -> the copy that was rendered."""
    browser = _browser()
    if browser is None:
        pytest.skip(
            "no headless Chromium installed (apt-get install chromium-headless-shell): "
            "the layout at 1280 px is not checked"
        )
    site = tmp_path_factory.mktemp("rendered") / "site"
    shutil.copytree(built, site)
    reports: dict[str, Any] = {}
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={WINDOW}",
            "--force-device-scale-factor=1",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        name = str(page.relative_to(site))
        found = re.search(r'<pre id="layout-report">(.*?)</pre>', done.stdout, re.S)
        if found is None:
            reports[name] = f"not measured ({done.stderr.strip()[-300:]})"
        else:
            reports[name] = json.loads(html.unescape(found.group(1)))
    return {"site": site, "pages": reports}


def test_every_page_fits_1280_px(rendered: dict[str, Any]) -> None:
    problems = []
    for name, report in rendered["pages"].items():
        if isinstance(report, str):
            problems.append(f"{name}: {report}")
            continue
        if report["page"]:
            problems.append(f"{name}: the page scrolls sideways")
        problems += [f"{name}: {item}" for item in report["items"]]
    assert not problems, "\n".join(problems)


def png_text_and_dpi(path: Path) -> tuple[dict[str, str], float | None]:
    """A PNG's text chunks (``tEXt``) and its resolution in dots per inch (``pHYs``, where
    it gives one in metres), read from the file's chunks."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    texts: dict[str, str] = {}
    dpi = None
    at = 8
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"pHYs" and body[8] == 1:  # unit: the metre
            dpi = struct.unpack(">I", body[:4])[0] * 0.0254
        at += 12 + length
    return texts, dpi


def shown_text_px(points: float, dpi: float, natural: float, shown: float) -> float:
    """The height on the page, in CSS pixels, of text of ``points`` in a PNG drawn at
    ``dpi`` and ``natural`` pixels wide, shown ``shown`` CSS pixels wide: a point is
    ``dpi / 72`` of the PNG's pixels, scaled by the width it is shown at."""
    return points * dpi / 72 * shown / natural


def test_shown_text_px() -> None:
    # a 10 pt title at 100 dpi is 13.9 px at the PNG's own size, half that at half width
    assert shown_text_px(10, 100, 680, 680) == pytest.approx(13.89, abs=0.01)
    assert shown_text_px(10, 100, 680, 340) == pytest.approx(6.94, abs=0.01)
    # 9 pt at 96 dpi, shown at its size: 12 px, the smallest legible
    assert shown_text_px(9, 96, 500, 500) == pytest.approx(SMALLEST_TEXT_PX)


def test_png_text_and_dpi_reads_what_matplotlib_writes(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    try:
        fig.savefig(tmp_path / "f.png", dpi=80, metadata={TEXT_SIZE: "7.5"})
    finally:
        plt.close(fig)
    texts, dpi = png_text_and_dpi(tmp_path / "f.png")
    assert texts[TEXT_SIZE] == "7.5"
    assert dpi == pytest.approx(80, abs=0.01)


def test_figure_text_is_legible_at_1280_px(rendered: dict[str, Any]) -> None:
    """The smallest text of each figure (its panel titles, at least), as shown at 1280 px.

    Figures are PNGs, so the page cannot say their fonts. The examples that draw the
    site's figures record in each PNG the size of its smallest visible text, in points
    (``TEXT_SIZE``), and matplotlib records the dpi it was drawn at (``pHYs``). The browser
    gives the width the page shows the image at and the PNG's own width; the text's
    height on the page is then ``points * dpi / 72 * shown / natural`` CSS pixels, and it
    must be at least 12 px (9 pt). Figures that record no text size (placeholders, figures
    drawn elsewhere) cannot be measured: they are named in a warning. The committed
    figures of the transformers page record it, so the check always runs.
    """
    site: Path = rendered["site"]
    problems, measured, unmeasured = [], [], []
    for name, report in rendered["pages"].items():
        if isinstance(report, str):
            problems.append(f"{name}: {report}")
            continue
        for image in report["images"]:
            url = urlparse(image["src"])
            path = Path(unquote(url.path))
            label = f"{name}: {path.relative_to(site) if path.is_relative_to(site) else path}"
            if url.scheme != "file" or path.suffix.lower() != ".png" or not path.is_file():
                unmeasured.append(label)
                continue
            texts, dpi = png_text_and_dpi(path)
            if TEXT_SIZE not in texts or dpi is None:
                unmeasured.append(label)
                continue
            if not image["natural"]:
                problems.append(f"{label}: not loaded")
                continue
            px = shown_text_px(float(texts[TEXT_SIZE]), dpi, image["natural"], image["shown"])
            measured.append(f"{label}: {px:.1f} px")
            if px < SMALLEST_TEXT_PX:
                problems.append(
                    f"{label}: its smallest text ({texts[TEXT_SIZE]} pt at {dpi:.0f} dpi, "
                    f"{image['natural']} px wide shown at {image['shown']:.0f} px) is "
                    f"{px:.1f} px tall, under {SMALLEST_TEXT_PX:g} px: larger titles, fewer "
                    "columns or smaller panels"
                )
    if unmeasured:
        warnings.warn(
            "figures that record no text size, not measured: " + ", ".join(unmeasured),
            stacklevel=1,
        )
    transformers = [m for m in measured if m.startswith("transformers/")]
    assert len(transformers) == 2, f"the transformers page's figures unmeasured: {measured}"
    assert not problems, "\n".join(problems)
