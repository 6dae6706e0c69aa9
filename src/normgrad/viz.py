"""Pictures of saliency maps (needs the ``viz`` extra: ``pip install 'normgrad[viz]'``).

matplotlib is imported when a function here is called, never by ``import normgrad``.

Example:
    >>> import torch
    >>> from normgrad import viz
    >>> image, saliency = torch.rand(64, 64), torch.rand(1, 64, 64)
    >>> fig = viz.compare(image, {"NormGrad": saliency}, boxes=torch.tensor([[5, 5, 20, 20]]))
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ._errors import ArgumentTypeError, ShapeError, describe
from .metrics import FROCResult, points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "froc_curve", "overlay", "pointed"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt  # falls back to a non-interactive backend headless
    except ImportError as error:  # pragma: no cover - exercised without the extra only
        raise ImportError("normgrad.viz needs matplotlib: pip install 'normgrad[viz]'") from error
    return plt


def _image_2d(image: torch.Tensor | Any, argument: str = "image") -> torch.Tensor:
    t = torch.as_tensor(image).detach().float().cpu()
    if t.ndim == 3 and t.shape[0] in (1, 3):
        t = t.mean(dim=0) if t.shape[0] == 3 else t[0]
    if t.ndim != 2:
        raise ShapeError(
            f"{argument}: expected an image (H, W), (1, H, W) or (3, H, W), "
            f"got shape {tuple(t.shape)}",
            t.shape,
        )
    return t


def pointed(saliency: torch.Tensor) -> tuple[int, int]:
    """``(x, y)`` of the first maximum of a map, the Pointing Game's point
    (:func:`normgrad.metrics.points`)."""
    s = _image_2d(saliency, "saliency")
    y, x = points(s[None]).tolist()[0]
    return x, y


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
) -> Axes:
    """Draw a saliency map over a grey image, with the boxes of the regions and the pointed maximum.

    Args:
        image: ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)`` (shown in grey).
        saliency: ``(H, W)`` or ``(1, H, W)``, values in ``[0, 1]``.
        boxes: ``(K, 4)`` boxes ``(xmin, ymin, xmax, ymax)`` in pixels, inclusive, drawn in green.
        ax: the axes to draw on (a new figure when omitted).
        title: the axes' title.
        alpha: opacity of the map.
        cmap: colour map of the saliency.
        point: mark the map's first maximum with a white cross.

    Returns:
        The axes.
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    img = _image_2d(image)
    sal = _image_2d(saliency, "saliency")
    if sal.shape != img.shape:
        raise ShapeError(
            f"saliency: expected the image's size {tuple(img.shape)}, got {tuple(sal.shape)}",
            sal.shape,
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(img.numpy(), cmap="gray")
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
    if point:
        x, y = pointed(sal)
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
) -> Figure:
    """A figure with the image and each method's map side by side, as in the paper.

    Args:
        image: the image, as for :func:`overlay`.
        maps: method name -> saliency map ``(H, W)`` or ``(1, H, W)``.
        boxes: boxes of the regions, drawn on every panel.
        columns: panels per row (default: all in one row).
        size: panel size in inches.

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
    img = _image_2d(image)
    flat[0].imshow(img.numpy(), cmap="gray")
    if boxes is not None:
        overlay(img, torch.zeros_like(img), boxes, ax=flat[0], alpha=0.0, point=False)
    flat[0].set_title("image", fontsize=8)
    flat[0].set_axis_off()
    for ax, (name, saliency) in zip(flat[1:], maps.items()):
        overlay(img, saliency, boxes, ax=ax, title=name)
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
        results: a :class:`~normgrad.metrics.FROCResult`, or method name -> result.
        ax: the axes to draw on (a new figure when omitted).
        title: the axes' title.

    Returns:
        The axes.

    Example:
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
