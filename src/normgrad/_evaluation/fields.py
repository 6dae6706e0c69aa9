"""The fields of a record: what a metric writes per image, as a value and as text.

A field is named (the record's attribute and the records file's column), has a default
(the value when it was not computed, and the random point's), and is written to and
read from the records file's text; a value a record cannot hold (a file edited by hand) is
refused with what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class BadLine(Exception):
    """A line of a records file that is not a record: what is wrong with it."""


@dataclass(frozen=True)
class Field:
    """One value per record: its name, its default, and its text in a records file."""

    name: str
    default: Any
    write: Callable[[Any], str]
    read: Callable[[str], Any]
    """The value of a field's text, raising ``BadLine`` for text no value writes."""


def number_text(value: float) -> str:
    """A number as text that reads back bit for bit (``repr``), NaN as nothing."""
    return "" if math.isnan(value) else repr(float(value))


def read_number(text: str, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A field holding a finite number in ``[low, high]``, or nothing (NaN)."""
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high or math.isinf(value):
        bounds = "" if math.isinf(low) and math.isinf(high) else f" in [{low:g}, {high:g}]"
        raise BadLine(f"{what}: expected a finite number{bounds} or nothing, got {text!r}")
    return value


def read_count(text: str, what: str) -> int:
    """A field holding an int ``>= 0``."""
    if not (text.isascii() and text.isdigit()):
        raise BadLine(f"{what}: expected an int >= 0, got {text!r}")
    return int(text)


def number(name: str, low: float = -math.inf, high: float = math.inf) -> Field:
    """A field of one number per image (NaN: not computed, or no region), e.g. a score."""
    return Field(name, math.nan, number_text, lambda text: read_number(text, name, low, high))
