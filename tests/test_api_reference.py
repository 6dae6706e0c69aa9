"""The API reference renders every public name, each on its room's page."""

from __future__ import annotations

import re
from pathlib import Path

import normgrad

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
DIRECTIVE = re.compile(r"^::: (\S+)\n((?:    .*\n)*)", re.M)


def _rendered() -> set[str]:
    """The names the API pages render: each directive's object, and the public names of a
    module rendered with its members."""
    names: set[str] = set()
    for page in PAGES:
        for name, options in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            names.add(name)
            module = _module(name)
            if module is not None and "members: false" not in options:
                names |= {f"{name}.{member}" for member in module.__all__}
    return names


def _module(name: str) -> object | None:
    import importlib

    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return module if hasattr(module, "__all__") else None


def _public() -> set[str]:
    names = {f"normgrad.{n}" for n in normgrad.__all__ if not n.startswith("_")}
    for module in ("functional", "metrics", "sanity", "presets", "viz"):
        names |= {f"normgrad.{module}.{n}" for n in _module(f"normgrad.{module}").__all__}  # type: ignore[attr-defined]
    return names


def test_every_public_name_is_in_the_api_reference() -> None:
    assert len(PAGES) >= 7
    missing = sorted(_public() - _rendered())
    assert not missing, f"add them to a page of docs/api/: {missing}"


def test_each_name_is_rendered_once() -> None:
    seen: dict[str, str] = {}
    twice = []
    for page in PAGES:
        for name, _ in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            if name in seen:
                twice.append(f"{name}: {seen[name]} and {page.name}")
            seen[name] = page.name
    assert not twice, twice
