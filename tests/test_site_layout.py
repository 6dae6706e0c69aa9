"""The built site as a reader sees it: nothing is fetched from another host, and every page
fits a 1280 px window (no table or code block wider than the text column, no identifier
broken inside a word).

The layout test opens each page in headless Chromium (the system's ``chromium`` or
``chromium-headless-shell``; Debian: ``apt-get install chromium-headless-shell``) and is
skipped, saying so, where none is installed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WINDOW = "1280,900"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")

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
  const pre = document.createElement("pre");
  pre.id = "layout-report";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 200));
</script>"""


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def test_every_page_fits_1280_px(built: Path, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip(
            "no headless Chromium installed (apt-get install chromium-headless-shell): "
            "the layout at 1280 px is not checked"
        )
    site = tmp_path / "site"
    shutil.copytree(built, site)
    problems = []
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={WINDOW}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        name = str(page.relative_to(site))
        found = re.search(r'<pre id="layout-report">(.*?)</pre>', done.stdout, re.S)
        if found is None:
            problems.append(f"{name}: not measured ({done.stderr.strip()[-300:]})")
            continue
        report = json.loads(html.unescape(found.group(1)))
        if report["page"]:
            problems.append(f"{name}: the page scrolls sideways")
        problems += [f"{name}: {item}" for item in report["items"]]
    assert not problems, "\n".join(problems)
