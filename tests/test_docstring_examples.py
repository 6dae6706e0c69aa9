"""Every docstring example pastes into a fresh interpreter and runs.

``--doctest-modules`` runs the examples inside their own module, whose names (``metrics``,
``points``, ``Box``, ...) hide an import the example forgets. The API reference shows the
examples to readers, who paste them into a REPL: here each one runs in a fresh namespace
(``__name__`` only), so a missing import is a ``NameError`` and fails. Every line of an
example also fits the page (79 characters, as for the blocks of the docs).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import normgrad

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 79


def _modules() -> list[str]:
    names = [normgrad.__name__]
    for info in pkgutil.walk_packages(normgrad.__path__, prefix=f"{normgrad.__name__}."):
        names.append(info.name)
    return sorted(names)


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for test in finder.find(module):
            if test.examples:
                found.setdefault(test.name, test)
    return [found[name] for name in sorted(found)]


EXAMPLES = _examples()


def test_examples_are_found() -> None:
    names = {test.name.rsplit(".", 1)[-1] for test in EXAMPLES}
    assert {"NormGrad", "froc", "collate", "parse_vil", "froc_curve", "Box"} <= names
    assert len(EXAMPLES) > 30


@pytest.mark.parametrize("test", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example_runs_in_a_fresh_namespace(
    test: doctest.DocTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import torch

    torch.manual_seed(0)
    fresh = doctest.DocTest(
        test.examples,
        {"__name__": "__main__"},
        test.name,
        test.filename,
        test.lineno,
        test.docstring,
    )
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    runner.run(fresh, out=report.append, clear_globs=True)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    assert runner.failures == 0, "".join(report)


def test_docstring_examples_fit_the_page() -> None:
    """As the page shows them: ``>>> `` or ``... `` before each line of code."""
    long = [
        f"{test.name}: {line!r} is {width} characters"
        for test in EXAMPLES
        for example in test.examples
        for line, width in [
            *((line, len(line) + 4) for line in example.source.splitlines()),
            *((line, len(line)) for line in example.want.splitlines()),
        ]
        if width > WIDTH
    ]
    assert not long, long
