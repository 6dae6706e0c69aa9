"""Layer output layouts: channels-first, channels-last and tokens, all read as (N, C, *spatial).

A captured layer may output ``(N, C, *spatial)`` (convolutions), ``(N, *spatial, C)``
(channels-last blocks: Swin stages and norms, ConvNeXt's permuted norms) or tokens
``(N, T, C)``: ``P`` prefix tokens (class, distillation, register tokens) followed by a patch
grid in row-major order (vision transformers). ``layout_detection`` detects the layout
where the shapes leave one reading that fits the input's geometry, takes it from the model
where it says (a torchvision ``VisionTransformer``'s patch size and class token, timm's
``patch_embed`` and ``num_prefix_tokens``), and otherwise asks for it to be stated: a
reading that does not fit is never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import torch

from .._errors import ArgumentTypeError, InvalidArgumentError, LayerError, describe

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
TOKENS = "tokens"

_NAMES = {
    "channels_first": CHANNELS_FIRST,
    "nchw": CHANNELS_FIRST,
    "ncdhw": CHANNELS_FIRST,
    "ncl": CHANNELS_FIRST,
    "channels_last": CHANNELS_LAST,
    "nhwc": CHANNELS_LAST,
    "ndhwc": CHANNELS_LAST,
    "nlc": CHANNELS_LAST,
    "tokens": TOKENS,
    "auto": "auto",
}


@dataclass(frozen=True)
class Tokens:
    """A token layout ``(N, T, C)``: ``prefix`` tokens, then a patch grid in row-major order.

    Either field may be left out (``None``) to be inferred: ``Tokens(prefix=1)`` states one
    class token and lets the grid follow from the input's size;
    ``Tokens(prefix=1, grid=(14, 14))`` states everything.

    Attributes:
        prefix: the tokens before the grid (class, distillation, register tokens), or
            ``None`` to infer.
        grid: the patch grid's size per spatial dimension (``(rows, columns)``), or
            ``None`` to infer from the input's size.
    """

    prefix: int | None = None
    grid: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.prefix is not None and (
            not isinstance(self.prefix, int) or isinstance(self.prefix, bool) or self.prefix < 0
        ):
            raise InvalidArgumentError(
                f"layout: expected Tokens(prefix=) to be an int >= 0, got {self.prefix!r}"
            )
        if self.grid is not None:
            grid = tuple(self.grid)
            if not grid or any(not isinstance(g, int) or g < 1 for g in grid):
                raise InvalidArgumentError(
                    f"layout: expected Tokens(grid=) to be positive ints (h, w) or (d, h, w), "
                    f"got {self.grid!r}"
                )
            object.__setattr__(self, "grid", grid)


Layout = Union[None, str, Tokens]
"""How a layer's output is laid out: ``None`` or ``"auto"`` (detect), ``"channels_first"``
(``"nchw"``), ``"channels_last"`` (``"nhwc"``), ``"tokens"`` or [`Tokens`][normgrad.Tokens]."""

Layouts = Union[Layout, Mapping[str, Layout]]
"""One layout for every layer, or a layout per layer name."""


@dataclass(frozen=True)
class Resolved:
    """A layout fixed for one output shape: ``kind``, and for tokens ``prefix`` and ``grid``."""

    kind: str
    prefix: int = 0
    grid: tuple[int, ...] = ()

    def to_channels_first(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in this layout as ``(N, C, *spatial)`` (a view where possible)."""
        if self.kind == CHANNELS_LAST:
            return t.movedim(-1, 1)
        if self.kind == TOKENS:
            return t[:, self.prefix :].transpose(1, 2).reshape(t.shape[0], t.shape[2], *self.grid)
        return t


def _check_layout(layout: object, argument: str) -> Layout:
    if layout is None or isinstance(layout, Tokens):
        return layout
    if isinstance(layout, str) and layout.strip().lower() in _NAMES:
        name = _NAMES[layout.strip().lower()]
        return None if name == "auto" else name
    if isinstance(layout, str):
        raise InvalidArgumentError(
            f"{argument}: expected 'auto', 'channels_first' ('nchw'), 'channels_last' "
            f"('nhwc'), 'tokens' or normgrad.Tokens(prefix=..., grid=...), got {layout!r}"
        )
    raise ArgumentTypeError(
        f"{argument}: expected a layout name, normgrad.Tokens or a dict layer name -> layout, "
        f"got {describe(layout)}"
    )


def layouts_for(names: Sequence[str], layout: Layouts) -> list[Layout]:
    """One checked layout per layer name, from one layout or a dict by layer name."""
    if isinstance(layout, Mapping):
        unknown = [k for k in layout if k not in names]
        if unknown:
            raise LayerError(
                f"layout: names {unknown} are not among the explained layers {list(names)}"
            )
        return [_check_layout(layout.get(n), f"layout[{n!r}]") for n in names]
    checked = _check_layout(layout, "layout")
    return [checked] * len(names)
