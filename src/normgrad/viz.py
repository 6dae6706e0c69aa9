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
    >>> fig = viz.compare(image, {"NormGrad": saliency}, boxes=torch.tensor([[5, 5, 20, 20]]))
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import torch

from ._checks import check_number, check_tolerance
from ._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .metrics import FROCResult, PointingGameCurve, points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Index", "compare", "froc_curve", "overlay", "pointed", "pointing_game_curves"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt  # falls back to a non-interactive backend headless
    except ImportError as error:  # pragma: no cover - exercised without the extra only
        raise ImportError("normgrad.viz needs matplotlib: pip install 'normgrad[viz]'") from error
    return plt


Index = Union[int, str, None]
"""Which slice of a volume to show: an int, ``"max"`` (through the map's first maximum), or
``None`` for a 2-D image."""

_SLICE_HINT = (
    "for a volume (D, H, W) choose a slice with index= (an int, or 'max' for the slice "
    "through the map's maximum) and axis= (0: depth, 1: rows, 2: columns)"
)


def _tensor(value: torch.Tensor | Any) -> torch.Tensor:
    return torch.as_tensor(value).detach().float().cpu()


def _image_2d(image: torch.Tensor | Any, argument: str = "image") -> torch.Tensor:
    """A 2-D map ``(H, W)`` from ``(H, W)`` or ``(1, H, W)``; colour is refused."""
    t = _tensor(image)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise ShapeError(
            f"{argument}: expected a map (H, W) or (1, H, W), got shape {tuple(t.shape)}; "
            + _SLICE_HINT,
            t.shape,
        )
    return t


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
    t = _tensor(value)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ShapeError(
            f"{argument}: with index= expected a volume (D, H, W) or (1, D, H, W), got shape "
            f"{tuple(t.shape)} (leave index out for a 2-D image)",
            t.shape,
        )
    return t


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


def froc_curve(
    results: FROCResult | Mapping[str, FROCResult],
    *,
    ax: Axes | None = None,
    title: str | None = "FROC",
) -> Axes:
    """Sensitivity against false positives per image, one step curve per result.

    The curve is drawn as steps (the sensitivity at a rate is the best operating point at
    or below it), on a log2 axis of false positives per image, with the rates that FROC
    averages marked; each label carries its FROC score.

    Args:
        results: a [`metrics.FROCResult`][normgrad.metrics.FROCResult], or method name -> result.
        ax: the axes to draw on (a new figure when omitted).
        title: the axes' title.

    Returns:
        The axes.

    Examples:
        >>> from normgrad import metrics
        >>> maps = torch.zeros(2, 8, 8); maps[0, 1, 1] = 1; maps[1, 5, 5] = 0.5
        >>> result = metrics.froc(maps, [torch.tensor([[0, 0, 2, 2]]), torch.zeros(0, 4)])
        >>> ax = froc_curve({"map": result})
        >>> ax.get_xlabel()
        'false positives per image'
    """
    plt = _pyplot()
    named = {"": results} if isinstance(results, FROCResult) else dict(results)
    for name, result in named.items():
        if not isinstance(result, FROCResult):
            raise ArgumentTypeError(
                f"results: expected FROCResult values, got {describe(result)} for {name!r}"
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    rates: tuple[float, ...] = ()
    for name, result in named.items():
        rates = result.rates
        low = min(rates) / 2
        fps = result.fps_per_image.clamp_min(low).tolist()
        fps.append(max(fps[-1], max(rates) * 2))  # the last operating point holds on
        sens = result.sensitivity.tolist()
        sens.append(sens[-1])
        label = f"{name} ({result.froc:.3f})" if name else f"FROC {result.froc:.3f}"
        line = ax.step(fps, sens, where="post", label=label)[0]
        ax.plot(rates, result.sensitivities, "o", color=line.get_color(), markersize=3)
    ax.set_xscale("log", base=2)
    if rates:
        ax.set_xlim(min(rates) / 2, max(rates) * 2)
        ax.set_xticks(list(rates), [f"{r:g}" for r in rates])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return ax


def pointing_game_curves(
    curves: PointingGameCurve | Mapping[str, PointingGameCurve],
    *,
    tolerance: float | None = None,
    cells: Mapping[str, float] | None = None,
    unit: str = "px",
    intervals: bool = True,
    ax: Axes | None = None,
    title: str | None = "Pointing Game at every tolerance",
) -> Axes:
    """Hit rate against tolerance, one curve per method, on one plot.

    Each curve is drawn through its tolerances (sorted), with its Wilson interval as a band;
    its label carries the area under it (and the tolerance the area runs to, when the curves'
    differ). A dashed black line marks ``tolerance`` (e.g. the paper's, scaled to the
    images); a dotted line in a method's colour marks its ``cells`` entry (the size of a cell
    of the finest layer the method reads: a map cannot point more finely than that), with a
    ring where it meets the curve (a cell beyond the largest tolerance is named in the label
    only). The legend sits below the plot.

    Args:
        curves: a [`metrics.PointingGameCurve`][normgrad.metrics.PointingGameCurve], or method
            name -> curve.
        tolerance: a tolerance to mark (in ``unit``), or None.
        cells: method name -> cell size of its finest layer in ``unit`` (e.g. 8 for a
            stride-8 layer on pixels); every name must be one of ``curves``.
        unit: the unit of the tolerances, for the labels.
        intervals: draw the Wilson intervals.
        ax: the axes to draw on (a new figure when omitted).
        title: the axes' title.

    Returns:
        The axes; ``ax.figure.savefig("curves.png")`` saves the picture.

    Examples:
        >>> import torch
        >>> from normgrad import metrics, viz
        >>> near = torch.tensor([0.0, 1.5, 3.0, 9.0], dtype=torch.float64)
        >>> far = torch.tensor([2.0, 6.0, 7.0, 30.0], dtype=torch.float64)
        >>> curves = {m: metrics.pointing_game_curve(d, max_tolerance=12)
        ...           for m, d in {"NormGrad": near, "Grad-CAM": far}.items()}
        >>> ax = viz.pointing_game_curves(curves, tolerance=2.4, cells={"NormGrad": 8})
        >>> ax.get_xlabel()
        'tolerance (px)'
    """
    plt = _pyplot()
    import numpy as np

    if isinstance(curves, PointingGameCurve):
        named: dict[str, PointingGameCurve] = {"": curves}
    elif isinstance(curves, Mapping):
        named = dict(curves)
    else:
        raise ArgumentTypeError(
            f"curves: expected a PointingGameCurve or a dict name -> curve, got {describe(curves)}"
        )
    if not named:
        raise InvalidArgumentError("curves: expected at least one curve, got an empty dict")
    for name, curve in named.items():
        if not isinstance(curve, PointingGameCurve):
            raise ArgumentTypeError(
                f"curves: expected PointingGameCurve values (from metrics.pointing_game_curve), "
                f"got {describe(curve)} for {name!r}"
            )
    marked = check_tolerance(tolerance) if tolerance is not None else None
    sizes: dict[str, float] = {}
    if cells is not None:
        if not isinstance(cells, Mapping):
            raise ArgumentTypeError(
                f"cells: expected a dict method name -> cell size, got {describe(cells)}"
            )
        for name, size in cells.items():
            if name not in named:
                raise InvalidArgumentError(
                    f"cells: expected names of curves ({', '.join(map(repr, named))}), got {name!r}"
                )
            sizes[name] = check_number(size, f"cells[{name!r}]", low=0, open_low=True)
    figure = None
    if ax is None:
        entries = len(named) + (marked is not None)
        figure, ax = plt.subplots(figsize=(5.5, 3.2 + 0.21 * entries))
    ends = {curve.max_tolerance for curve in named.values()}
    right = max(max(max(c.tolerances), c.max_tolerance) for c in named.values())
    for name, curve in named.items():
        order = np.argsort(np.asarray(curve.tolerances), kind="stable")
        x = np.asarray(curve.tolerances)[order]
        y = np.asarray(curve.hit_rate)[order]
        area = f"AUC {curve.auc:.2f}"
        if len(ends) > 1:
            area += f" to {curve.max_tolerance:g} {unit}"
        if name in sizes:
            area += f"; cell {sizes[name]:g} {unit}"
        label = f"{name} ({area})" if name else area
        line = ax.plot(x, y, label=label, linewidth=1.6)[0]
        colour = line.get_color()
        if intervals:
            low = np.asarray(curve.low)[order]
            high = np.asarray(curve.high)[order]
            ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)
        if name in sizes:
            cell = sizes[name]
            ax.axvline(cell, color=colour, linestyle=":", linewidth=1.4)
            if x[0] <= cell <= x[-1]:
                at = float(np.interp(cell, x, y))
                ax.plot([cell], [at], "o", markerfacecolor="none", color=colour, markersize=7)
    if marked is not None:
        ax.axvline(
            marked,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"tolerance {marked:g} {unit}",
        )
        right = max(right, marked)
    ax.set_xlim(0, right)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"tolerance ({unit})", fontsize=10)
    ax.set_ylabel("hit rate", fontsize=10)
    ax.tick_params(labelsize=9)
    if title:
        suffix = f" (AUC to {next(iter(ends)):g} {unit})" if len(ends) == 1 else ""
        ax.set_title(title + suffix, fontsize=10)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0, -0.16), frameon=False)
    ax.grid(alpha=0.3)
    if figure is not None:
        figure.tight_layout()
    return ax
