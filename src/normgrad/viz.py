"""Pictures of saliency maps (needs the ``viz`` extra: ``pip install 'normgrad[viz]'``).

matplotlib is imported when a function here is called, never by ``import normgrad``.

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
from typing import TYPE_CHECKING, Any

import torch

from ._errors import ArgumentTypeError, ShapeError, describe
from .metrics import points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "overlay", "pointed"]


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
    ([`metrics.points`][normgrad.metrics.points])."""
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
        image: the image, as for [`overlay`][normgrad.viz.overlay].
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
