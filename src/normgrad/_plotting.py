"""Curves of metrics over a data set, drawn with matplotlib (imported on use): FROC, and
the Pointing Game at every tolerance. Public through [`normgrad.viz`][normgrad.viz]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._checks import check_number, check_tolerance
from ._errors import ArgumentTypeError, InvalidArgumentError, describe
from .metrics import FROCResult, PointingGameCurve

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt  # falls back to a non-interactive backend headless
    except ImportError as error:  # pragma: no cover - exercised without the extra only
        raise ImportError("normgrad.viz needs matplotlib: pip install 'normgrad[viz]'") from error
    return plt


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
        >>> import torch
        >>> from normgrad import metrics, viz
        >>> maps = torch.zeros(2, 8, 8); maps[0, 1, 1] = 1; maps[1, 5, 5] = 0.5
        >>> boxes = [torch.tensor([[0, 0, 2, 2]]), torch.zeros(0, 4)]
        >>> result = metrics.froc(maps, boxes)
        >>> ax = viz.froc_curve({"map": result})
        >>> ax.get_xlabel()
        'false positives per image'
    """
    plt = pyplot()
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
    images); a dotted line in a method's color marks its ``cells`` entry (the size of a cell
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
    named, sizes = _checked_curves(curves, cells)
    marked = check_tolerance(tolerance) if tolerance is not None else None
    figure = None
    if ax is None:
        entries = len(named) + (marked is not None)
        figure, ax = pyplot().subplots(figsize=(5.5, 3.2 + 0.21 * entries))
    ends = {curve.max_tolerance for curve in named.values()}
    right = max(max(max(c.tolerances), c.max_tolerance) for c in named.values())
    for name, curve in named.items():
        area = f"AUC {curve.auc:.2f}"
        if len(ends) > 1:
            area += f" to {curve.max_tolerance:g} {unit}"
        if name in sizes:
            area += f"; cell {sizes[name]:g} {unit}"
        _draw_curve(ax, curve, f"{name} ({area})" if name else area, sizes.get(name), intervals)
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


def _checked_curves(
    curves: object, cells: object
) -> tuple[dict[str, PointingGameCurve], dict[str, float]]:
    """``pointing_game_curves``' curves by name ("" for one curve alone) and the cell
    size of each method that has one, checked."""
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
    sizes: dict[str, float] = {}
    if cells is None:
        return named, sizes
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
    return named, sizes


def _draw_curve(
    ax: Axes, curve: PointingGameCurve, label: str, cell: float | None, intervals: bool
) -> None:
    """One method's hit rate through its sorted tolerances, its Wilson band, and a dotted
    line at its ``cell`` size with a ring where it meets the curve."""
    import numpy as np

    order = np.argsort(np.asarray(curve.tolerances), kind="stable")
    x = np.asarray(curve.tolerances)[order]
    y = np.asarray(curve.hit_rate)[order]
    line = ax.plot(x, y, label=label, linewidth=1.6)[0]
    color = line.get_color()
    if intervals:
        low = np.asarray(curve.low)[order]
        high = np.asarray(curve.high)[order]
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    if cell is not None:
        ax.axvline(cell, color=color, linestyle=":", linewidth=1.4)
        if x[0] <= cell <= x[-1]:
            at = float(np.interp(cell, x, y))
            ax.plot([cell], [at], "o", markerfacecolor="none", color=color, markersize=7)
