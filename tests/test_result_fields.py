"""Every public result type documents every field in its docstring's ``Attributes:``.

A result type is a dataclass or a ``NamedTuple`` of normgrad that a reader meets: one of
the public names, or one named in the annotations of a public function, method, property
or field (a type returned by ``evaluate`` without being exported is still read). Its
class docstring has a Google ``Attributes:`` section, read here with griffe's Google
parser as the site reads it, that names every field and nothing that is not a field or a
public attribute; ``help()`` shows that section, so a field has no second description in
a string below it (one statement per fact).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import logging
import pkgutil
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from griffe import Docstring, DocstringSectionKind

import normgrad

PUBLIC_MODULES = ["normgrad", *(f"normgrad.{m}" for m in ("functional", "metrics", "sanity", "presets", "viz"))]  # fmt: skip


def _fields(cls: type) -> list[str] | None:
    """The public fields of a dataclass or a ``NamedTuple`` (a private one, such as a
    cache, is no part of the result); ``None`` for any other class."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return list(cls._fields)
    return None


def _all_record_types() -> dict[str, type]:
    """Every dataclass and ``NamedTuple`` defined in normgrad, public or not, by name."""
    found: dict[str, type] = {}
    names = [normgrad.__name__]
    names += [i.name for i in pkgutil.walk_packages(normgrad.__path__, prefix="normgrad.")]
    for name in names:
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == name and _fields(obj) is not None:
                found[obj.__name__] = obj
    return found


def _annotations(obj: Any) -> Iterator[str]:
    """The annotations (as text) of a public callable, or of a class's fields, public
    methods and properties."""
    if inspect.isclass(obj):
        yield from (str(a) for a in inspect.get_annotations(obj).values())
        for name, member in vars(obj).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property) and member.fget is not None:
                yield from _annotations(member.fget)
            elif isinstance(member, (staticmethod, classmethod)):
                yield from _annotations(member.__func__)
            elif inspect.isfunction(member):
                yield from _annotations(member)
    elif callable(obj):
        yield from (str(a) for a in inspect.get_annotations(obj).values())


def result_types() -> list[type]:
    """The result types a reader meets: the public ones, and those the annotations of
    public names (and of the types found) name, followed to the end."""
    candidates = _all_record_types()
    todo: list[Any] = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        todo += [getattr(module, n) for n in module.__all__]
    seen: dict[str, type] = {}
    done: set[int] = set()
    while todo:
        obj = todo.pop()
        if id(obj) in done:
            continue
        done.add(id(obj))
        if (
            inspect.isclass(obj)
            and _fields(obj) is not None
            and obj.__module__.startswith("normgrad")
        ):
            seen[obj.__qualname__] = obj
        for text in _annotations(obj):
            todo += [candidates[n] for n in re.findall(r"\w+", text) if n in candidates]
    return [seen[n] for n in sorted(seen)]


def documented(cls: type) -> list[str]:
    """The names in the class docstring's ``Attributes:`` section, read as the site reads
    them (griffe's Google parser)."""
    logging.getLogger("griffe").setLevel(logging.ERROR)
    sections = Docstring(inspect.getdoc(cls) or "", parser="google").parse()
    return [a.name for s in sections if s.kind is DocstringSectionKind.attributes for a in s.value]


def field_strings(cls: type) -> list[str]:
    """The fields of a class described by a string right below them."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    return [
        node.target.id
        for node, after in zip(body, body[1:])
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(after.value.value, str)
    ]


def problems(cls: type) -> list[str]:
    """What a result type's docstring lacks: undocumented fields, names that are neither
    a field nor a public attribute, fields described below them instead."""
    fields = _fields(cls) or []
    names = documented(cls)
    out = [f"field {f!r} is not in Attributes:" for f in fields if f not in names]
    out += [
        f"{n!r} in Attributes: is not a field"
        for n in names
        if n not in fields and not hasattr(cls, n)
    ]
    out += [
        f"{n!r} named twice in Attributes:"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    out += [
        f"field {f!r} has a string below it: move it to Attributes:" for f in field_strings(cls)
    ]
    return out


RESULT_TYPES = result_types()


def test_the_result_types_are_found() -> None:
    names = {cls.__name__ for cls in RESULT_TYPES}
    expected = {
        "DoMResult", "PointingGameCurve", "PointingGameResult", "Peaks", "EvaluationResult",
        "MethodScore", "Record", "Explanation", "DeletionInsertionResult", "FROCResult",
        "CascadeResult", "LayerPreset", "PreparedRegions", "Box", "Tokens",
    }  # fmt: skip
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("cls", RESULT_TYPES, ids=lambda cls: cls.__qualname__)
def test_every_field_is_documented(cls: type) -> None:
    assert not problems(cls), f"{cls.__module__}.{cls.__qualname__}: {problems(cls)}"


@dataclass(frozen=True)
class _Half:
    """A result documenting one of its two fields, the other below it.

    Attributes:
        kept: documented.
        gone: not a field.
    """

    kept: float
    left: float
    """Described below the field."""


class _Pair(NamedTuple):
    """A named tuple documenting both fields.

    Attributes:
        first: the first.
        second: the second.
    """

    first: int
    second: int


def test_the_check_sees_what_is_missing() -> None:
    assert problems(_Half) == [
        "field 'left' is not in Attributes:",
        "'gone' in Attributes: is not a field",
        "field 'left' has a string below it: move it to Attributes:",
    ]
    assert problems(_Pair) == []
