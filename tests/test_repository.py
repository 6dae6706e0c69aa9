"""The repository keeps its promises: README's commands, CI running them, a light import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [b for b in _bash_blocks(readme) if "pytest" in b]
    assert len(commands) == 1, commands
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[0] in ci_lines


def test_readme_demo_command_names_an_existing_script() -> None:
    readme = (ROOT / "README.md").read_text()
    demo = next(b for b in _bash_blocks(readme) if "pytest" not in b)
    script = re.search(r"python (\S+\.py)", demo)
    assert script is not None and (ROOT / script.group(1)).is_file()


def test_import_does_not_pull_matplotlib_or_torchvision() -> None:
    code = (
        "import sys, normgrad; "
        "bad = [m for m in ('matplotlib', 'torchvision', 'captum') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_sorted_and_exist() -> None:
    import normgrad

    assert list(normgrad.__all__) == sorted(normgrad.__all__)
    for name in normgrad.__all__:
        assert hasattr(normgrad, name), name


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "src" / "normgrad" / "py.typed").is_file()


def test_docs_pages_are_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in nav, page.name


def test_property_tests_take_their_number_of_examples_from_the_profile() -> None:
    """@settings(max_examples=...) on a test would stop the thorough profile from reaching
    it: tests say @examples(n) (tests/conftest.py), which the profile scales."""
    tests = Path(__file__).resolve().parent
    offending = [
        f"{path.name}:{number}"
        for path in sorted(tests.glob("*.py"))
        if path.name != "conftest.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.lstrip().startswith("@settings(")
    ]
    assert offending == []


def _imported_modules(tree: ast.Module) -> list[str]:
    """Every module a file imports, dotted as written (``.x`` for ``from . import x``)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_tests_import_no_test_module_and_references_live_apart() -> None:
    """A test module is run, never imported: helpers that several tests share live in a
    module not named ``test_*`` (``models.py``, ``lifecycle.py``, ...), and the slow,
    literal references (``reference_*``, ``literal_*``, ``ref_*``) in ``tests/reference/``,
    one module per idea, never inside a test module."""
    tests = Path(__file__).resolve().parent
    imports, definitions = [], []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(tests).as_posix()
        imports += [
            f"{where}: {name}"
            for name in _imported_modules(tree)
            if any(part.startswith("test_") for part in name.split("."))
        ]
        if path.name.startswith("test_"):
            definitions += [
                f"{where}:{node.lineno} {node.name}"
                for node in ast.walk(tree)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and re.match(r"_*(reference|literal|ref)_", node.name)
            ]
    assert imports == [], "a test module imported; move what it shares out of test_* modules"
    assert definitions == [], "a reference defined in a test module; move it to tests/reference/"
