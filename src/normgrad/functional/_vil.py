"""Virtual identity layers (VILs) by name: ``scaling``, ``conv1x1``, ``convKxK``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from .._errors import ArgumentTypeError, InvalidArgumentError, describe

_VIL_PATTERN = re.compile(r"^conv(\d+)((?:x\d+)+)$")


class VIL(NamedTuple):
    """A parsed virtual identity layer.

    Attributes:
        kind: ``"scaling"`` or ``"conv"``.
        kernel_size: the kernel's size along each dimension; 1 for ``scaling`` and
            ``conv1x1``.
        ndim: the number of spatial dimensions the name fixes (``"conv3x3x3"`` fixes 3),
            or ``None`` when the kernel applies to every spatial dimension of the input
            (``"conv3x3"`` on a volume is a 3x3x3 patch).
    """

    kind: str
    kernel_size: int
    ndim: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "scaling":
            return "scaling"
        dims = self.ndim if self.ndim is not None else 2
        return "conv" + "x".join([str(self.kernel_size)] * dims)

    def check_dims(self, spatial: int, argument: str, shape: Sequence[int]) -> None:
        """Raise unless this VIL applies to a tensor ``shape`` with ``spatial`` dimensions.

        Explainers call it on the input before spending a forward and backward pass.
        """
        if self.ndim is not None and self.ndim != spatial:
            raise InvalidArgumentError(
                f"vil: {self.name!r} needs {self.ndim} spatial dimensions, got {argument} "
                f"of shape {tuple(shape)} ({spatial} spatial); name the kernel once, "
                f"e.g. 'conv{self.kernel_size}x{self.kernel_size}', to apply it to every "
                "spatial dimension"
            )


def parse_vil(vil: str | VIL) -> VIL:
    """Parse a VIL name: ``"scaling"``, ``"conv1x1"``, ``"conv3x3"`` or any odd ``"convKxK"``.

    ``"convKxKxK"`` is accepted for volumes. Raises
    [`InvalidArgumentError`][normgrad.InvalidArgumentError] for an unknown name or an even kernel.

    Examples:
        >>> from normgrad.functional import parse_vil
        >>> parse_vil("conv5x5")
        VIL(kind='conv', kernel_size=5, ndim=None)
    """
    if isinstance(vil, VIL):
        return vil
    if not isinstance(vil, str):
        raise ArgumentTypeError(
            f"vil: expected a string such as 'scaling', 'conv1x1' or 'conv3x3', got {describe(vil)}"
        )
    name = vil.strip().lower().replace("×", "x")
    if name == "scaling":
        return VIL("scaling", 1)
    match = _VIL_PATTERN.match(name)
    if match is None:
        raise InvalidArgumentError(
            f"vil: expected 'scaling', 'conv1x1', 'conv3x3' or 'convKxK' with K odd, got {vil!r}"
        )
    sizes = [int(match.group(1))] + [int(s) for s in match.group(2).split("x")[1:]]
    if len(set(sizes)) != 1:
        raise InvalidArgumentError(
            f"vil: expected the same kernel size in every dimension (e.g. 'conv3x3'), got {vil!r}"
        )
    kernel_size = sizes[0]
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise InvalidArgumentError(
            f"vil: expected an odd kernel size so the patch is centred on its position, "
            f"got {vil!r} (kernel size {kernel_size}); try 'conv{kernel_size + 1}x"
            f"{kernel_size + 1}'"
        )
    if len(sizes) > 3:
        raise InvalidArgumentError(f"vil: expected at most 3 spatial dimensions, got {vil!r}")
    ndim = None if len(sizes) == 2 else len(sizes)
    return VIL("conv", kernel_size, ndim)
