r"""Object shapes as Object-CXR annotates them: rectangles, ellipses, polygons, and their pixels.

Coordinates are in pixels, origin at the upper left, ``x`` to the right and ``y`` downward;
the pixel in row ``i`` and column ``j`` is the point ``(x, y) = (j, i)`` (its centre). A pixel
belongs to a shape when its centre lies inside the shape **or on its boundary**:

- [`Box`][normgrad.metrics.Box] ``(xmin, ymin, xmax, ymax)``: $x_{min} \le x \le x_{max}$ and
  $y_{min} \le y \le y_{max}$ (the inclusive boxes of
  [`prepare_regions`][normgrad.metrics.prepare_regions]).
- [`Ellipse`][normgrad.metrics.Ellipse] given by its bounding box: centre $c$, semi-axes
  $a = (x_{max} - x_{min})/2$, $b = (y_{max} - y_{min})/2$; the pixel is in when
  it is in the box and $(x - c_x)^2 b^2 + (y - c_y)^2 a^2 \le a^2 b^2$ (no division, so
  a flat ellipse is the segment between its corners' midpoints, and a point is a pixel).
- [`Polygon`][normgrad.metrics.Polygon] with vertices $v_0, \dots, v_{n-1}$ (closed:
  $v_n = v_0$): the pixel is in when it lies on an edge (cross product zero, inside the
  edge's box) or inside by the even-odd rule (a ray to the right crosses an odd number of
  edges; an edge counts when one end is strictly below the pixel's row and the other is
  not). A self-intersecting polygon therefore has holes where it overlaps itself an even
  number of times.

Every test is carried out in float64 with multiplications only, so it is exact for
coordinates that are integers or halves (as Object-CXR gives them) up to 2**20.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import torch

from ..._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ..._transfer import to_device
from .boxes import check_box


def _corners(values: Sequence[float], kind: str) -> tuple[float, float, float, float]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{kind}: expected numbers, got {describe(values)}") from None
    if len(numbers) != 4:
        raise InvalidArgumentError(
            f"{kind}: expected 4 coordinates (xmin, ymin, xmax, ymax), got {len(numbers)}"
        )
    check_box(numbers, kind, f"; for two corners in any order use {kind}.from_corners")
    x0, y0, x1, y1 = numbers
    return x0, y0, x1, y1


class Shape:
    """A 2-D object region; ``contains`` says which pixels belong to it."""

    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the shape."""
        raise NotImplementedError

    @classmethod
    def _inside_many(
        cls, shapes: Sequence[Shape], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Whether the points ``x``, ``y`` ``(B, M)`` (float64) are in ``shapes`` (``B``, all of
        this class), row by row."""
        raise NotImplementedError

    @classmethod
    def _inside_grid(
        cls, shapes: Sequence[Shape], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Whether the pixels of each grid of columns ``x`` ``(B, C)`` and rows ``y``
        ``(B, R)`` are in ``shapes``: ``(B, R, C)``. By broadcasting ``_inside_many`` (its
        per-column and per-row terms are computed once)."""
        return cls._inside_many(shapes, x[:, None, :], y[:, :, None])

    def _inside(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._inside_many([self], x.reshape(1, -1), y.reshape(1, -1)).view(x.shape)

    def contains(self, points: torch.Tensor) -> torch.Tensor:
        """Whether each pixel ``(M, 2)`` in array order ``(row, column)`` belongs to the shape."""
        p = points.to(torch.float64)
        return self._inside(p[..., 1], p[..., 0])

    def mask(self, size: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean mask ``(H, W)`` of the pixels of an image of ``size`` ``(H, W)`` in the shape."""
        height, width = (int(s) for s in size)
        out = torch.zeros(height, width, dtype=torch.bool, device=device)
        window = self._window(size, device)
        if window is not None:
            r0, c0, inside = window
            out[r0 : r0 + inside.shape[0], c0 : c0 + inside.shape[1]] = inside
        return out

    def covers(self, size: Sequence[int]) -> bool:
        """Whether at least one pixel of an image of ``size`` ``(H, W)`` is in the shape."""
        window = self._window(size, None)
        return window is not None and bool(window[2].any())

    def _window(
        self, size: Sequence[int], device: torch.device | str | None
    ) -> tuple[int, int, torch.Tensor] | None:
        """First row, first column and mask of the shape's pixels within its bounds."""
        return rasterize([self], size, device)[0]


@dataclass(frozen=True, init=False)
class _Boxed(Shape):
    """A shape given by its axis-aligned box ``(xmin, ymin, xmax, ymax)``."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def __init__(self, xmin: float, ymin: float, xmax: float, ymax: float) -> None:
        values = _corners((xmin, ymin, xmax, ymax), type(self).__name__)
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), values):
            object.__setattr__(self, name, value)

    @classmethod
    def _checked(cls: type[_B], values: Sequence[float]) -> _B:
        """The shape of box ``values`` already checked (by ``box_flags``, for a batch)."""
        shape = object.__new__(cls)
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), values):
            object.__setattr__(shape, name, float(value))
        return shape

    @classmethod
    def from_corners(cls: type[_B], x1: float, y1: float, x2: float, y2: float) -> _B:
        """The shape whose box has the two opposite corners given, in any order."""
        return cls(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))

    def bounds(self) -> tuple[float, float, float, float]:
        return self.xmin, self.ymin, self.xmax, self.ymax

    @staticmethod
    def _boxes(shapes: Sequence[Shape], like: torch.Tensor) -> list[torch.Tensor]:
        """``xmin``, ``ymin``, ``xmax``, ``ymax`` of each shape, each ``(B, 1, ...)`` as
        the points ``like``."""
        b = to_device([s.bounds() for s in shapes], like.device, torch.float64)
        return list(b.view(-1, 4, *([1] * (like.ndim - 1))).unbind(1))

    @staticmethod
    def _in_box(box: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0, y0, x1, y1 = box
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


_B = TypeVar("_B", bound=_Boxed)


@dataclass(frozen=True, init=False)
class Box(_Boxed):
    """A rectangle ``(xmin, ymin, xmax, ymax)``, inclusive (Object-CXR type 0).

    Attributes:
        xmin: the box's first column, in pixels (x), inclusive.
        ymin: its first row, in pixels (y), inclusive.
        xmax: its last column, inclusive.
        ymax: its last row, inclusive.

    Examples:
        >>> from normgrad.metrics import Box
        >>> Box(1, 0, 2, 1).mask((2, 4)).int().tolist()
        [[0, 1, 1, 0], [0, 1, 1, 0]]
    """

    @classmethod
    def _inside_many(
        cls, shapes: Sequence[Shape], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        return cls._in_box(cls._boxes(shapes, x), x, y)


@dataclass(frozen=True, init=False)
class Ellipse(_Boxed):
    """The axis-aligned ellipse inscribed in the box ``(xmin, ymin, xmax, ymax)`` (type 1).

    Attributes:
        xmin: the column of the ellipse's leftmost point, in pixels (x).
        ymin: the row of its topmost point, in pixels (y).
        xmax: the column of its rightmost point.
        ymax: the row of its lowest point.

    Examples:
        >>> from normgrad.metrics import Ellipse
        >>> Ellipse(0, 0, 4, 2).mask((3, 5)).int().tolist()
        [[0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]]
    """

    @classmethod
    def _inside_many(
        cls, shapes: Sequence[Shape], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        box = cls._boxes(shapes, x)
        x0, y0, x1, y1 = box
        # doubled coordinates keep halves exact: 2x - (xmin + xmax) = 2 (x - cx)
        a2, b2 = x1 - x0, y1 - y0
        dx = 2 * x - (x0 + x1)
        dy = 2 * y - (y0 + y1)
        ellipse = dx * dx * (b2 * b2) + dy * dy * (a2 * a2) <= (a2 * a2) * (b2 * b2)
        return cls._in_box(box, x, y) & ellipse


@dataclass(frozen=True, init=False)
class Polygon(Shape):
    """A closed polygon through ``vertices`` ``(V, 2)`` as ``(x, y)`` (type 2).

    One vertex is a point, two are a segment. Inside or on the boundary, even-odd rule.

    Attributes:
        vertices: the vertices in order, each ``(x, y)`` (a column and a row, in pixels).

    Examples:
        >>> from normgrad.metrics import Polygon
        >>> Polygon([(0, 0), (3, 0), (0, 3)]).mask((4, 4)).int().tolist()
        [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    """

    vertices: tuple[tuple[float, float], ...]

    def __init__(self, vertices: Sequence[Sequence[float]] | torch.Tensor) -> None:
        v = torch.as_tensor(vertices, dtype=torch.float64) if len(vertices) else None
        if v is None or v.ndim != 2 or v.shape[1] != 2:
            shape = tuple(v.shape) if v is not None else (0,)
            raise ShapeError(
                f"Polygon: expected vertices of shape (V, 2) as (x, y) with V >= 1, "
                f"got shape {shape}",
                shape,
            )
        if not bool(torch.isfinite(v).all()):
            raise InvalidArgumentError(f"Polygon: expected finite vertices, got {v.tolist()}")
        object.__setattr__(self, "vertices", tuple((float(a), float(b)) for a, b in v.tolist()))

    def bounds(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.vertices]
        ys = [p[1] for p in self.vertices]
        return min(xs), min(ys), max(xs), max(ys)

    @staticmethod
    def _edges(shapes: Sequence[Shape], like: torch.Tensor) -> list[torch.Tensor]:
        """Each polygon's edges from ``(x1, y1)`` to ``(x2, y2)``, each ``(B, 1, ..., V)``
        (float64) with as many dimensions as the points ``like``. Vertices are padded with
        copies of the first: the closing edge stays, and the added edges have no length (no
        crossing; on them only at a vertex, already on the edge)."""
        polygons = [cast(Polygon, p).vertices for p in shapes]
        most = max(len(v) for v in polygons)
        padded = [list(v) + [v[0]] * (most - len(v)) for v in polygons]
        v = to_device(padded, like.device, torch.float64)  # (B, V, 2)
        w = v.roll(-1, 1)
        shape = (len(polygons), *[1] * (like.ndim - 2), most)
        return [t.reshape(shape) for t in (v[..., 0], v[..., 1], w[..., 0], w[..., 1])]

    @classmethod
    def _test(cls, shapes: Sequence[Shape], px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
        """The even-odd test of points ``px``, ``py`` broadcastable to each other, a last
        axis of one for the edges: on an edge, or right of an odd number of edges spanning
        the point's row. The cross product ``(py - y1) (x2 - x1) - (px - x1) (y2 - y1)`` is
        a term of the row minus a term of the column, and its sign the order of the two, so
        rows and columns of a grid are computed once each."""
        x1, y1, x2, y2 = cls._edges(shapes, px)
        row = (py - y1) * (x2 - x1)
        column = (px - x1) * (y2 - y1)  # the cross product is row - column
        # right of the point, on an edge spanning its row: cross > 0 upward, < 0 downward
        up = y2 > y1
        spans = (y1 > py) != (y2 > py)
        row_right = torch.where(spans, torch.where(up, row, -row), -math.inf)
        column_right = torch.where(up, column, -column)
        # on an edge: cross zero, in the edge's box (NaN equals nothing; inf - inf is no zero)
        in_rows = (py >= torch.minimum(y1, y2)) & (py <= torch.maximum(y1, y2)) & row.isfinite()
        in_columns = (px >= torch.minimum(x1, x2)) & (px <= torch.maximum(x1, x2))
        row_on = torch.where(in_rows, row, math.nan)
        column_on = torch.where(in_columns, column, math.nan)
        size = [max(a, b) for a, b in zip(px.shape[:-1], py.shape[:-1])]  # same ndim
        odd = torch.zeros(size, dtype=torch.bool, device=px.device)
        on_edge = torch.zeros_like(odd)
        for e in range(x1.shape[-1]):
            odd ^= row_right[..., e] > column_right[..., e]
            on_edge |= row_on[..., e] == column_on[..., e]
        return on_edge | odd

    @classmethod
    def _inside_many(
        cls, shapes: Sequence[Shape], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        most = max(len(cast(Polygon, p).vertices) for p in shapes)
        if x.numel() > 1 and x.numel() * most > _RASTER_POINTS * 4:  # (B, M, V): in parts
            b, m = x.shape
            if b > 1:
                half = b // 2
                parts = [(shapes[:half], x[:half], y[:half]), (shapes[half:], x[half:], y[half:])]
                return torch.cat([cls._inside_many(*part) for part in parts], dim=0)
            half = m // 2
            parts = [(shapes, x[:, :half], y[:, :half]), (shapes, x[:, half:], y[:, half:])]
            return torch.cat([cls._inside_many(*part) for part in parts], dim=1)
        return cls._test(shapes, x[..., None], y[..., None])

    @classmethod
    def _inside_grid(
        cls, shapes: Sequence[Shape], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        return cls._test(shapes, x[:, None, :, None], y[:, :, None, None])


def _per_kind(
    shapes: Sequence[Shape], out: torch.Tensor, test: str, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``out`` with, for each shape, its class's ``test`` (``_inside_many`` or
    ``_inside_grid``) of its row of ``x`` and ``y``: one batched test per kind of shape."""
    for kind in {type(shape) for shape in shapes}:
        rows = [i for i, shape in enumerate(shapes) if type(shape) is kind]
        at = to_device(rows, out.device)
        out[at] = getattr(kind, test)([shapes[i] for i in rows], x[at], y[at])
    return out


def contains_many(shapes: Sequence[Shape], points: torch.Tensor) -> torch.Tensor:
    """Whether each shape's pixels ``points`` ``(B, M, 2)`` (array order) belong to it
    ``(B, M)``: one batched test per kind of shape."""
    out = torch.zeros(points.shape[:2], dtype=torch.bool, device=points.device)
    p = points.to(torch.float64)
    return _per_kind(shapes, out, "_inside_many", p[..., 1], p[..., 0])


# points tested per batched call of rasterize (shapes grouped by the size of their window)
_RASTER_POINTS = 1 << 20


def rasterize(
    shapes: Sequence[Shape], size: Sequence[int], device: torch.device | str | None = None
) -> list[tuple[int, int, torch.Tensor] | None]:
    """Each shape's pixels in an image of ``size`` ``(H, W)``: the first row and column of
    its bounds clipped to the image and the mask of its pixels there, or None when the
    bounds hold no pixel. Shapes with windows of similar sizes are tested together, padded
    to the largest."""
    height, width = (int(s) for s in size)
    spans: dict[int, tuple[int, int, int, int]] = {}  # first row, first column, rows, columns
    for i, shape in enumerate(shapes):
        x0, y0, x1, y1 = shape.bounds()
        c0, r0 = max(0, math.ceil(x0)), max(0, math.ceil(y0))
        c1, r1 = min(width - 1, math.floor(x1)), min(height - 1, math.floor(y1))
        if c0 <= c1 and r0 <= r1:
            spans[i] = (r0, c0, r1 - r0 + 1, c1 - c0 + 1)
    out: list[tuple[int, int, torch.Tensor] | None] = [None] * len(shapes)
    live = sorted(spans, key=lambda i: spans[i][2:])
    while live:
        group: list[int] = []
        rows = cols = 0
        for i in live:
            h, w = max(rows, spans[i][2]), max(cols, spans[i][3])
            if group and (len(group) + 1) * h * w > _RASTER_POINTS:
                break
            group.append(i)
            rows, cols = h, w
        live = live[len(group) :]
        origin = to_device([spans[i][:2] for i in group], device, torch.float64)
        ys = origin[:, :1] + torch.arange(rows, dtype=torch.float64, device=device)
        xs = origin[:, 1:] + torch.arange(cols, dtype=torch.float64, device=device)
        inside = torch.zeros(len(group), rows, cols, dtype=torch.bool, device=device)
        inside = _per_kind([shapes[i] for i in group], inside, "_inside_grid", xs, ys)
        for b, i in enumerate(group):
            r0, c0, h, w = spans[i]
            out[i] = (r0, c0, inside[b, :h, :w])
    return out


def shapes_mask(
    shapes: Sequence[Shape], size: Sequence[int], device: torch.device | str | None = None
) -> torch.Tensor:
    """The union of ``shapes`` as a boolean mask ``(H, W)``.

    Examples:
        >>> from normgrad.metrics import Box, Ellipse, shapes_mask
        >>> shapes_mask([Box(0, 0, 0, 0), Ellipse(2, 0, 2, 1)], (2, 3)).int().tolist()
        [[1, 0, 1], [0, 0, 1]]
    """
    out = torch.zeros(tuple(int(s) for s in size), dtype=torch.bool, device=device)
    for shape in shapes:
        out |= shape.mask(size, device)
    return out
