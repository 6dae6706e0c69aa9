"""The documentation: every Python block on every page runs, and the site builds clean.

Conventions for ```python blocks in ``docs/*.md`` and ``README.md`` (CONTRIBUTING.md):

- a block runs on its own, in a fresh namespace and an empty working directory;
- a block whose first line starts with ``# continues`` (``# continues the loop above
  (model, loader)``) runs in the namespace the page's previous plain block left: the
  reader sees the same line, naming what it takes from there;
- a doctest block always stands alone (it never continues and is never continued);
- a block whose first line is ``# not run by the tests: <reason>`` is skipped, with the reason;
- a block written as a doctest (``>>>`` lines and their outputs) is run by doctest, so every
  output the docs show is checked;
- no line of a fenced block (any language) is longer than 79 characters, so none is cut
  off on the page (the architecture page's diagrams included).
"""

from __future__ import annotations

import doctest
import html
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
CONTINUES = "# continues"
SKIP = "# not run by the tests:"
WIDTH = 79


@dataclass
class Block:
    path: Path
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a page, with the line their code starts on."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = next(j for j in range(start, len(lines)) if lines[j].strip() == "```")
            blocks.append(Block(path, start + 1, "\n".join(lines[start:end]) + "\n"))
            i = end
        i += 1
    return blocks


def chains() -> list[list[Block]]:
    """Blocks grouped so that a block marked as continuing runs after the ones it continues."""
    out: list[list[Block]] = []
    for page in PAGES:
        previous: list[Block] | None = None
        for block in python_blocks(page):
            if ">>>" in block.code:
                assert not block.code.startswith(CONTINUES), f"{block.name}: a doctest"
                out.append([block])
            elif block.code.startswith(CONTINUES):
                assert previous is not None, f"{block.name}: continues no block"
                previous.append(block)
            else:
                previous = [block]
                out.append(previous)
    return out


CHAINS = chains()


def _run(block: Block, namespace: dict[str, Any]) -> None:
    if ">>>" in block.code:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.code, namespace, block.name, str(block.path), block.line)
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        runner = doctest.DocTestRunner(optionflags=flags)
        report: list[str] = []
        runner.run(test, out=report.append, clear_globs=False)
        assert runner.failures == 0, "".join(report)
    else:
        exec(compile(block.code, block.name, "exec"), namespace)


@pytest.mark.parametrize("chain", CHAINS, ids=[chain[0].name for chain in CHAINS])
def test_docs_python_block_runs(
    chain: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = chain[0].code.splitlines()[0]
    if first.startswith(SKIP):
        pytest.skip(first[len(SKIP) :].strip())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import torch

    torch.manual_seed(0)  # the same numbers whatever ran before
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in chain:
        _run(block, namespace)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def fenced_lines(path: Path) -> list[tuple[int, str]]:
    """Every line inside a fenced block of a page (any language), with its line number."""
    out, inside = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            out.append((number, line))
    return out


def test_docs_blocks_are_found_and_fit_the_page() -> None:
    names = {b.path.name for chain in CHAINS for b in chain}
    assert {"index.md", "getting-started.md", "metrics.md", "README.md"} <= names
    assert {"coming-from.md", "recipes.md"} <= names
    pages = [*PAGES, ROOT / "CONTRIBUTING.md"]
    long = [
        f"{page.relative_to(ROOT)}:{number}: {len(line)} characters"
        for page in pages
        for number, line in fenced_lines(page)
        if len(line) > WIDTH
    ]
    assert not long, long


def test_docs_shown_outputs_are_checked() -> None:
    """An output written as a comment ('# 0.852 [...]') is unchecked: show it as a doctest."""
    shown = [
        f"{block.name}: {line.strip()}"
        for chain in CHAINS
        for block in chain
        for line in block.code.splitlines()
        if re.search(r"#\s*(tensor\(|torch\.Size|\d\.\d{3} \[)", line)
    ]
    assert not shown, shown


# ---------------------------------------------------------------------------------------
# the built site

LEFTOVERS = (":math:", ":func:", ":class:", ":meth:", ":attr:", ".. math::", "Example:\n")
MATH_SPAN = re.compile(r'<(span|div) class="arithmatex">.*?</\1>', re.S)
CODE = re.compile(r"<(code|pre|script|style)\b.*?</\1>", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with --strict from a copy of the repository as a fresh clone has it:
    without the demonstration's generated tables and figures."""
    if not _has_module("mkdocs"):
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    clone = tmp_path_factory.mktemp("clone")
    shutil.copy(ROOT / "mkdocs.yml", clone)
    shutil.copytree(ROOT / "docs", clone / "docs", ignore=shutil.ignore_patterns("generated"))
    shutil.copytree(ROOT / "src", clone / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for snippet in re.findall(r'--8<-- "([^"]+)"', _all_pages_text()):
        if not snippet.startswith("docs/generated/"):
            (clone / snippet).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / snippet, clone / snippet)
    out = clone / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(command, cwd=clone, capture_output=True, text=True, env=_env(clone))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _all_pages_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _env(clone: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(clone / "src")
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


def _pages(site: Path) -> dict[str, str]:
    return {
        str(p.relative_to(site)): p.read_text(encoding="utf-8")
        for p in site.rglob("*.html")
        if p.name != "404.html"
    }


def _prose(page: str) -> str:
    """The page's text outside rendered maths, code and scripts."""
    body = page.split('<div class="md-content"', 1)[-1]
    body = MATH_SPAN.sub(" ", body)
    body = CODE.sub(" ", body)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_site_has_no_leftover_markup(site: Path) -> None:
    problems = []
    for name, page in _pages(site).items():
        text = _prose(page)
        for leftover in LEFTOVERS:
            if leftover in text:
                problems.append(f"{name}: {leftover.strip()!r}")
        for raw in (r"\(", r"\[", "$"):
            if raw in text:
                at = text.index(raw)
                problems.append(f"{name}: raw {raw!r} in {text[max(0, at - 60) : at + 60]!r}")
    assert not problems, problems


def test_site_renders_formulas_and_examples(site: Path) -> None:
    pages = _pages(site)
    for name in ("normgrad/index.html", "baselines/index.html", "metrics/index.html"):
        assert 'class="arithmatex"' in pages[name], name
    for name, page in pages.items():
        if 'class="arithmatex"' in page:
            assert "javascripts/vendor/mathjax/tex-svg.js" in page, name
            assert "javascripts/mathjax.js" in page, name
    assert (site / "javascripts/vendor/mathjax/tex-svg.js").stat().st_size > 1_000_000
    assert (site / "javascripts/vendor/mathjax/LICENSE").is_file()
    # the API reference: one page per room, linked from its overview
    rooms = ("explainers", "metrics", "evaluation", "sanity", "functional", "viz", "errors")
    for room in rooms:
        assert f'href="{room}/"' in pages["api/index.html"], room
    api = "".join(pages[f"api/{room}/index.html"] for room in rooms)
    # examples are code with their prompts, not prose
    assert api.count("&gt;&gt;&gt;") > 20
    assert "Examples:" not in _prose(api).replace("Examples: ", "")
    for name in ("normgrad.Target", "normgrad.Layers", "normgrad.MethodScore"):
        assert f'id="{name}"' in api, name
    assert 'id="normgrad.metrics.collate"' in api
    # long signatures are formatted (by ruff), one parameter per line
    start = api.index('id="normgrad.IntegratedGradients"')
    signature = api[start:].split("doc-signature highlight", 1)[1].split("</code>", 1)[0]
    assert "(\n    model: Module,\n    steps: int = 50," in re.sub(r"<[^>]+>", "", signature)
    # NormGrad.explain returns one Explanation, described in one row
    explain = api.split('id="normgrad.NormGrad.explain"', 1)[1].split('id="normgrad.', 1)[0]
    assert explain.count("<tr") == 2, explain


def test_site_builds_in_a_fresh_clone_without_the_demo(site: Path, tmp_path: Path) -> None:
    """The build hook writes placeholders when the demo's tables and figures are missing."""
    protocol = (site / "protocol/index.html").read_text(encoding="utf-8")
    assert "Not generated in this build" in protocol
    assert (site / "generated/protocol/figures/resnet18_seed0_example0_normgrad.png").is_file()
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    written = hooks.write_placeholders(tmp_path / "protocol")
    assert {p.name for p in written} == {*hooks.TEXTS, *hooks.FIGURES}
    assert "python examples/protocol.py --quick" in (tmp_path / "protocol/tables.md").read_text()
    png = (tmp_path / "protocol/figures" / hooks.FIGURES[0]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # the demo's own files are never overwritten
    (tmp_path / "protocol/tables.md").write_text("measured")
    assert hooks.write_placeholders(tmp_path / "protocol") == []
    assert (tmp_path / "protocol/tables.md").read_text() == "measured"
