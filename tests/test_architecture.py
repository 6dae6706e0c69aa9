"""The rooms of docs/architecture.md keep their one-way arrows, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "normgrad"

# room -> rooms it must never import (see docs/architecture.md)
FORBIDDEN = {
    "functional": {"_model", "_explainers", "_evaluation", "metrics", "sanity", "viz"},
    "_model": {"functional", "_explainers", "_evaluation", "metrics", "sanity", "viz"},
    "metrics": {"_model", "_explainers", "_evaluation", "functional", "sanity", "viz"},
    "_explainers": {"_evaluation", "metrics", "sanity", "viz"},
    "_evaluation": {"sanity", "viz"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The normgrad modules ``path`` imports, as absolute dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("normgrad"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("normgrad"))
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# the one metric that runs a model takes the model's mode switch from its owner, and reads
# its target as the explainers do
ALLOWED = {
    ("normgrad.metrics._deletion", "normgrad._model.hooks"),
    ("normgrad.metrics._deletion", "normgrad._model.targets"),
}


def test_rooms_import_only_downwards() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        room = _room(_module_name(path))
        for imported in _imports(path):
            if (_module_name(path), imported) in ALLOWED:
                continue
            if _room(imported) in FORBIDDEN.get(room, set()):
                wrong.append(f"{_module_name(path)} imports {imported}")
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    graph = {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}
    # a package's __init__ re-exporting its modules is not a cycle of ideas
    edges = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for module in edges:
        if module not in state:
            visit(module, [])


def test_only_the_model_room_registers_hooks() -> None:
    hooks = ("register_forward_hook", "register_full_backward_hook", "register_hook(")
    outside = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if _room(_module_name(p)) != "_model" and any(h in p.read_text() for h in hooks)
    ]
    assert not outside, outside


def test_modules_are_small() -> None:
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def _code_lines(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines of code: its lines less blank ones, comments and its docstring."""
    first = node.body[0]
    docstring = (
        range(first.lineno, (first.end_lineno or first.lineno) + 1)
        if isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        else range(0)
    )
    return sum(
        1
        for number in range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if number not in docstring
        and lines[number - 1].strip()
        and not lines[number - 1].strip().startswith("#")
    )


def test_functions_are_short() -> None:
    """No function (method, nested function) over 60 lines of code."""
    long = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(lines, node)
                if n > 60:
                    long.append(f"{path.relative_to(SRC)}::{node.name} ({n} lines)")
    assert not long, long


def test_code_lines_are_counted_without_docstring_and_comments() -> None:
    source = (
        'def f(x):\n    """Doc.\n\n    More.\n    """\n    # a comment\n\n    y = x\n    return y\n'
    )
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _code_lines(source.splitlines(), node) == 3


# a private module (``_x``) of a package is read by that package only, which re-exports
# its public names; the one exception (docs/architecture.md): the evaluation room reads
# the metrics' one-batch internals (prepared regions, points, accumulators, matching)
READS_PRIVATE_MODULES_OF = {"_evaluation": {"metrics"}}


def _private_package(module: str) -> str | None:
    """The package whose private module ``module`` is (``normgrad.metrics._pointing`` ->
    ``metrics``), or None where it is no package's private module but the root's."""
    parts = module.split(".")
    for i in range(2, len(parts)):
        if parts[i].startswith("_"):
            return ".".join(parts[1:i])
    return None


def test_private_modules_are_read_by_their_package_only() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        me = _module_name(path)
        for imported in _imports(path):
            package = _private_package(imported)
            if package is None or me.startswith(f"normgrad.{package}"):
                continue
            if package.split(".")[0] not in READS_PRIVATE_MODULES_OF.get(_room(me), set()):
                wrong.append(f"{me} imports {imported}")
    assert not wrong, wrong
