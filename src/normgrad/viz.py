"""Pictures of saliency maps (needs the ``viz`` extra: ``pip install 'normgrad[viz]'``).

matplotlib is imported when a function here is called, never by ``import normgrad``.
Colour images ``(3, H, W)`` are shown in colour, grey ones in grey, each rescaled to its
own range. A volume ``(D, H, W)`` is shown one slice at a time: choose it with ``index=``
along ``axis=`` (0 for depth, the default), or ``index="max"`` for the slice through the
map's first maximum. [`overlay`][normgrad.viz.overlay] returns matplotlib axes; save the
picture with ``ax.figure.savefig("map.png")``.

Examples:
    >>> import torch
    >>> from normgrad import viz
    >>> image, saliency = torch.rand(64, 64), torch.rand(1, 64, 64)
    >>> boxes = torch.tensor([[5, 5, 20, 20]])
    >>> fig = viz.compare(image, {"NormGrad": saliency}, boxes=boxes)
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import torch

from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from ._plotting import froc_curve, pointing_game_curves
from ._plotting import pyplot as _pyplot
from .metrics import points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Index", "compare", "froc_curve", "overlay", "pointed", "pointing_game_curves"]


Index = Union[int, str, None]
"""Which slice of a volume to show: an int, ``"max"`` (through the map's first maximum), or
``None`` for a 2-D image."""

_SLICE_HINT = (
    "for a volume (D, H, W) choose a slice with index= (an int, or 'max' for the slice "
    "through the map's maximum) and axis= (0: depth, 1: rows, 2: columns)"
)


def _tensor(value: torch.Tensor | Any) -> torch.Tensor:
    return torch.as_tensor(value).detach().float().cpu()


def _squeezed(value: torch.Tensor | Any, ndim: int, expected: str, hint: str) -> torch.Tensor:
    """``value`` with ``ndim`` dimensions, a leading axis of one dropped; otherwise an
    error saying what was ``expected``, the shape that arrived and the ``hint``."""
    t = _tensor(value)
    if t.ndim == ndim + 1 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != ndim:
        raise ShapeError(f"{expected}, got shape {tuple(t.shape)}{hint}", t.shape)
    return t


def _image_2d(image: torch.Tensor | Any, argument: str = "image") -> torch.Tensor:
    """A 2-D map ``(H, W)`` from ``(H, W)`` or ``(1, H, W)``; colour is refused."""
    expected = f"{argument}: expected a map (H, W) or (1, H, W)"
    return _squeezed(image, 2, expected, "; " + _SLICE_HINT)


def _picture(image: torch.Tensor | Any) -> torch.Tensor:
    """The image to show: grey ``(H, W)`` or colour ``(H, W, 3)``, rescaled to ``[0, 1]``."""
    t = _tensor(image)
    if t.ndim == 3 and t.shape[0] in (1, 3):
        t = t.permute(1, 2, 0) if t.shape[0] == 3 else t[0]
    elif t.ndim != 2:
        raise ShapeError(
            f"image: expected an image (H, W), (1, H, W) or (3, H, W), got shape "
            f"{tuple(t.shape)} (a channels-last image (H, W, 3) is .permute(2, 0, 1)); "
            + _SLICE_HINT,
            t.shape,
        )
    low, high = t.min(), t.max()
    return (t - low) / (high - low) if high > low else torch.zeros_like(t)


def _volume(value: torch.Tensor | Any, argument: str) -> torch.Tensor:
    expected = f"{argument}: with index= expected a volume (D, H, W) or (1, D, H, W)"
    return _squeezed(value, 3, expected, " (leave index out for a 2-D image)")


def _slices(
    image: torch.Tensor | Any,
    saliency: torch.Tensor,
    boxes: torch.Tensor | Sequence[Sequence[float]] | None,
    index: Index,
    axis: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The 2-D slice ``index`` along array ``axis`` of a volume, its map and its boxes."""
    img, sal = _volume(image, "image"), _volume(saliency, "saliency")
    if sal.shape != img.shape:
        raise ShapeError(
            f"saliency: expected the volume's size {tuple(img.shape)}, got {tuple(sal.shape)}",
            sal.shape,
        )
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise InvalidArgumentError(f"axis: expected 0, 1 or 2, got {axis!r}")
    if index == "max":
        where = int(points(sal[None]).tolist()[0][axis])
    elif isinstance(index, int) and not isinstance(index, bool):
        where = index
    else:
        raise ArgumentTypeError(f"index: expected an int, 'max' or None, got {describe(index)}")
    size = img.shape[axis]
    if not -size <= where < size:
        raise InvalidArgumentError(
            f"index: expected a slice in [0, {size}) along axis {axis}, got {where}"
        )
    where %= size
    shown = None
    if boxes is not None:
        # boxes are (x, y, z) mins then maxes; array axis a is box coordinate 2 - a
        b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 6)
        cut, rows, cols = 2 - axis, *(2 - a for a in range(3) if a != axis)
        inside = (b[:, cut] <= where) & (where <= b[:, cut + 3])
        shown = b[inside][:, [cols, rows, cols + 3, rows + 3]]
    return img.select(axis, where), sal.select(axis, where), shown


def pointed(saliency: torch.Tensor) -> tuple[int, int] | None:
    """``(x, y)`` of the first maximum of a map, the Pointing Game's point
    ([`metrics.points`][normgrad.metrics.points]); ``None`` for a constant map, which
    points nowhere."""
    s = _image_2d(saliency, "saliency")
    y, x = points(s[None]).tolist()[0]
    return None if x < 0 else (x, y)


def overlay(
    image: torch.Tensor,
    saliency: torch.Tensor,
    boxes: torch.Tensor | Sequence[Sequence[float]] | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    point: bool = True,
    index: Index = None,
    axis: int = 0,
) -> Axes:
    """Draw a saliency map over an image, with the boxes of the regions and the pointed maximum.

    Args:
        image: ``(H, W)``, ``(1, H, W)`` (grey) or ``(3, H, W)`` (colour); with ``index``, a
            volume ``(D, H, W)`` or ``(1, D, H, W)``. Shown rescaled to its own range.
        saliency: ``(H, W)`` or ``(1, H, W)``, values in ``[0, 1]``; with ``index``, a
            volume like the image's.
        boxes: ``(K, 4)`` boxes ``(xmin, ymin, xmax, ymax)`` in pixels, inclusive, drawn in
            green; with ``index``, ``(K, 6)`` boxes ``(xmin, ymin, zmin, xmax, ymax, zmax)``,
            of which those the slice cuts are drawn.
        ax: the axes to draw on (a new figure when omitted).
        title: the axes' title.
        alpha: opacity of the map.
        cmap: colour map of the saliency.
        point: mark the (slice's) map's first maximum with a white cross.
        index: for a volume, the slice to show: an int, or ``"max"`` for the slice through
            the map's first maximum (the Pointing Game's point).
        axis: for a volume, the array axis ``index`` counts along: 0 (depth, the default),
            1 (rows) or 2 (columns).

    Returns:
        The axes; ``ax.figure.savefig("map.png")`` saves the picture.

    Examples:
        >>> import torch
        >>> from normgrad import viz
        >>> volume, saliency = torch.rand(8, 16, 16), torch.rand(1, 8, 16, 16)
        >>> ax = viz.overlay(volume, saliency, index="max", title="slice")
        >>> ax.get_title()
        'slice'
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    if index is not None:
        image, saliency, boxes = _slices(image, saliency, boxes, index, axis)
    img = _picture(image)
    sal = _image_2d(saliency, "saliency")
    if sal.shape != img.shape[:2]:
        raise ShapeError(
            f"saliency: expected the image's size {tuple(img.shape[:2])}, got {tuple(sal.shape)}",
            sal.shape,
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.imshow(sal.numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    if boxes is not None:
        b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        for xmin, ymin, xmax, ymax in b.tolist():
            ax.add_patch(
                Rectangle(
                    (xmin - 0.5, ymin - 0.5),
                    xmax - xmin + 1,
                    ymax - ymin + 1,
                    fill=False,
                    color="lime",
                    linewidth=1.2,
                )
            )
    at = pointed(sal) if point else None
    if at is not None:
        x, y = at
        ax.plot([x], [y], marker="+", color="white", markersize=12, markeredgewidth=2.5)
        ax.plot([x], [y], marker="+", color="black", markersize=8, markeredgewidth=1)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return ax


def compare(
    image: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    boxes: torch.Tensor | Sequence[Sequence[float]] | None = None,
    *,
    columns: int | None = None,
    size: float = 2.2,
    index: Index = None,
    axis: int = 0,
) -> Figure:
    """A figure with the image and each method's map side by side, as in the paper.

    Args:
        image: the image, as for [`overlay`][normgrad.viz.overlay].
        maps: method name -> saliency map ``(H, W)`` or ``(1, H, W)`` (volumes with
            ``index``).
        boxes: boxes of the regions, drawn on every panel.
        columns: panels per row (default: all in one row).
        size: panel size in inches.
        index: for volumes, the slice shown on every panel, as for
            [`overlay`][normgrad.viz.overlay] (``"max"``: through the first map's maximum).
        axis: for volumes, the array axis ``index`` counts along.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
    if not isinstance(maps, Mapping):
        raise ArgumentTypeError(f"maps: expected a dict name -> map, got {describe(maps)}")
    panels = 1 + len(maps)
    cols = columns or panels
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.3), squeeze=False)
    flat = list(axes.flat)
    if index is not None:
        first = _tensor(next(iter(maps.values()))) if maps else _tensor(image)
        if index == "max":
            index = int(points(_volume(first, "maps")[None]).tolist()[0][axis])
        sliced = {}
        for name, saliency in maps.items():
            _, sliced[name], _ = _slices(image, saliency, None, index, axis)
        image, first, boxes = _slices(image, _volume(image, "image"), boxes, index, axis)
        maps = sliced
    img = _picture(image)
    flat[0].imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
    if boxes is not None:
        blank = torch.zeros(img.shape[:2])
        overlay(image, blank, boxes, ax=flat[0], alpha=0.0, point=False)
    flat[0].set_title("image", fontsize=8)
    flat[0].set_axis_off()
    for ax, (name, saliency) in zip(flat[1:], maps.items()):
        overlay(image, saliency, boxes, ax=ax, title=name)
    for ax in flat[panels:]:
        ax.set_axis_off()
    fig.tight_layout()
    figure: Figure = fig
    return figure
