"""Synthetic chest radiographs with foreign objects, generated on the fly.

Each image has a body, two dark lung fields, a heart shadow, bright bone that is never a
target (spine with vertebrae, ribs, clavicles, shoulders, the heart's border), noise, and a
random contrast and exposure. Half of the images carry 1 to 3 foreign objects (buttons,
clips, rings, thin wires: shapes of several sizes and contrasts; most are radiopaque like
metal, brighter than the ribs and up to brighter than the spine, one in four is faint, no
brighter than a rib) placed anywhere in the lung fields, each with its exact bounding box
(the extent of the pixels it brightens). The brightest pixels of an image are therefore
often bone, not an object: a map that merely follows the input's intensity does not find
the objects. With
``small_central=True`` every positive image carries one small object near the image centre,
like the left ventricular outflow tract in the paper's LVOT data, where the centre baseline
is hard to beat.

Everything is deterministic by seed: image ``i`` of ``SyntheticCXR(seed=s)`` is the same on
every machine.

    >>> ds = SyntheticCXR(8, size=96, seed=0)
    >>> image, label, boxes = ds[1]
    >>> image.shape, label, boxes.shape[1]
    (torch.Size([3, 96, 96]), 1, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

OBJECT_KINDS = ("button", "clip", "ring", "wire")


@dataclass(frozen=True)
class Radiograph:
    """One generated image."""

    image: torch.Tensor
    """Grey image ``(H, W)``, float32."""
    boxes: torch.Tensor
    """``(K, 4)`` boxes ``(xmin, ymin, xmax, ymax)``, inclusive pixels; ``K = 0`` if none."""
    kinds: list[str]
    """The kind of each object."""
    masks: torch.Tensor
    """``(K, H, W)`` boolean masks of the pixels each object brightens."""


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in (0, 1)
    return torch.meshgrid(coords, coords, indexing="ij")


def _ellipse(
    y: torch.Tensor, x: torch.Tensor, cy: float, cx: float, ry: float, rx: float
) -> torch.Tensor:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2


def _smooth_step(d: torch.Tensor, width: float = 0.08) -> torch.Tensor:
    """1 inside an ellipse (d < 1), 0 outside, with a soft edge."""
    return torch.clamp((1 - d) / width, 0, 1)


def _u(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _anatomy(size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The background radiograph and the lung-field mask.

    Bone is bright, as on a real radiograph: spine (with vertebrae), clavicles, ribs over the
    lungs, shoulders, and the heart's border; none of it is a target, and its brightness
    varies from image to image as much as the objects' does.
    """
    y, x = _grid(size)
    shift_x, shift_y = _u(gen, -0.03, 0.03), _u(gen, -0.03, 0.03)
    cx = 0.5 + shift_x
    body = _smooth_step(_ellipse(y, x, 0.55 + shift_y, cx, 0.55, _u(gen, 0.40, 0.46)))
    lung_ry, lung_rx = _u(gen, 0.26, 0.31), _u(gen, 0.13, 0.16)
    left = _ellipse(y, x, 0.47 + shift_y, 0.31 + shift_x, lung_ry, lung_rx)
    right = _ellipse(y, x, 0.47 + shift_y, 0.69 + shift_x, lung_ry, lung_rx)
    lungs = torch.maximum(_smooth_step(left), _smooth_step(right))
    image = 0.05 + 0.45 * body - 0.28 * lungs
    # spine and mediastinum: a bright vertical band, brighter at each vertebra
    vertebrae = 0.75 + 0.25 * torch.cos(2 * math.pi * (y - _u(gen, 0, 0.05)) / 0.05)
    spine = torch.exp(-(((x - cx) / 0.05) ** 2)) * body * vertebrae
    image = image + _u(gen, 0.3, 0.6) * spine
    # heart shadow, lower left of the image's centre, with a bright border
    heart_d = _ellipse(y, x, 0.62 + shift_y, 0.56 + shift_x, 0.14, 0.12)
    heart = _smooth_step(heart_d, 0.3)
    image = image + 0.18 * heart * lungs.clamp(0.3, 1)
    rim = torch.exp(-(((heart_d.sqrt() - 1) / 0.05) ** 2)) * (y > 0.55 + shift_y)
    image = image + _u(gen, 0.08, 0.25) * rim * body
    # ribs: curved bright bands over the lungs
    spacing = _u(gen, 0.065, 0.08)
    phase = _u(gen, 0, spacing)
    curve = y - 0.9 * (x - cx) ** 2
    ribs = torch.cos(2 * math.pi * (curve - phase) / spacing).clamp_min(0) ** 6
    image = image + _u(gen, 0.1, 0.3) * ribs * lungs.clamp(0.4, 1) * body
    # clavicles: bright bars from the top of the spine out to the shoulders
    height = 0.17 + shift_y + _u(gen, -0.02, 0.02)
    offset = (x - cx).abs()
    clavicle_line = height - 0.25 * (offset - 0.2) ** 2 + 0.05 * offset
    clavicles = torch.exp(-(((y - clavicle_line) / 0.018) ** 2)) * (offset > 0.04) * (offset < 0.38)
    image = image + _u(gen, 0.2, 0.45) * clavicles * body
    # shoulders: the humeral heads in the upper corners
    shoulders = torch.maximum(
        _smooth_step(_ellipse(y, x, 0.16 + shift_y, cx - 0.42, 0.08, 0.07), 0.4),
        _smooth_step(_ellipse(y, x, 0.16 + shift_y, cx + 0.42, 0.08, 0.07), 0.4),
    )
    image = image + _u(gen, 0.2, 0.45) * shoulders
    # low-frequency variation and noise
    tilt = _u(gen, -0.08, 0.08) * (x - 0.5) + _u(gen, -0.08, 0.08) * (y - 0.5)
    image = image + tilt + _u(gen, 0.01, 0.03) * torch.randn(size, size, generator=gen)
    # contrast and exposure
    gamma, gain, offset_ = _u(gen, 0.75, 1.35), _u(gen, 0.8, 1.2), _u(gen, -0.05, 0.05)
    image = gain * image.clamp_min(0) ** gamma + offset_
    return image, (torch.minimum(left, right) < 0.85) & (body > 0.5)


def _object_mask(
    kind: str, size: int, cy: float, cx: float, scale: float, gen: torch.Generator
) -> torch.Tensor:
    """The pixels of one object centred at ``(cy, cx)`` (in [0, 1]), ``scale`` its radius."""
    y, x = _grid(size)
    if kind == "button":
        disc = _ellipse(y, x, cy, cx, scale, scale) <= 1
        hole = scale * 0.25
        holes = (_ellipse(y, x, cy, cx - hole, hole * 0.6, hole * 0.6) <= 1) | (
            _ellipse(y, x, cy, cx + hole, hole * 0.6, hole * 0.6) <= 1
        )
        return disc & ~holes
    if kind == "ring":
        d = _ellipse(y, x, cy, cx, scale, scale)
        return (d <= 1) & (d >= 0.45)
    if kind == "clip":
        angle = _u(gen, 0, math.pi)
        u = (x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)
        v = -(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)
        return (u.abs() <= scale * 1.2) & (v.abs() <= scale * 0.4)
    # wire: a quadratic Bezier curve of some thickness
    angle = _u(gen, 0, math.pi)
    length = scale * 4
    p0 = (cy - length * math.sin(angle), cx - length * math.cos(angle))
    p2 = (cy + length * math.sin(angle), cx + length * math.cos(angle))
    p1 = (cy + _u(gen, -length, length), cx + _u(gen, -length, length))
    t = torch.linspace(0, 1, 64)
    py = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0]
    px = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1]
    d2 = (y[..., None] - py) ** 2 + (x[..., None] - px) ** 2
    thickness = max(scale * 0.08, 0.6 / size)  # thin: one or two pixels wide
    return d2.amin(dim=-1) <= thickness**2


def _box(mask: torch.Tensor) -> list[int]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def make_radiograph(
    size: int = 224,
    seed: int = 0,
    n_objects: int = 0,
    small_central: bool = False,
    object_intensity: float = 1.0,
) -> Radiograph:
    """One synthetic radiograph with ``n_objects`` foreign objects.

    Args:
        size: image side in pixels.
        seed: the image's seed.
        n_objects: number of objects (0 for a clean image).
        small_central: small objects near the centre instead of anywhere in the lungs.
        object_intensity: brightness added by an object (0 draws nothing but consumes the
            same random numbers, so the same seed gives the same background).
    """
    gen = torch.Generator().manual_seed(seed)
    image, lungs = _anatomy(size, gen)
    candidates = torch.nonzero(lungs)
    boxes, kinds, masks = [], [], []
    for _ in range(n_objects):
        kind = OBJECT_KINDS[int(torch.randint(len(OBJECT_KINDS), (), generator=gen))]
        if small_central:
            scale = _u(gen, 0.018, 0.03)
            cy, cx = 0.5 + _u(gen, -0.06, 0.06), 0.5 + _u(gen, -0.06, 0.06)
        else:
            scale = _u(gen, 0.025, 0.06)
            cy, cx = (
                (candidates[int(torch.randint(len(candidates), (), generator=gen))].float() + 0.5)
                / size
            ).tolist()
        mask = _object_mask(kind, size, cy, cx, scale, gen)
        if not bool(mask.any()):  # too small to cover a pixel centre: take the nearest one
            mask[min(size - 1, int(cy * size)), min(size - 1, int(cx * size))] = True
        # most foreign objects are metal, radiopaque: brighter than the ribs, up to brighter
        # than the spine; about one in four is faint, no brighter than a rib
        faint = bool(torch.rand((), generator=gen) < 0.25)
        brightness = (_u(gen, 0.1, 0.3) if faint else _u(gen, 0.3, 0.8)) * object_intensity
        texture = 1 + 0.1 * torch.randn(size, size, generator=gen).clamp(-2, 2)
        image = image + brightness * texture * mask
        boxes.append(_box(mask))
        kinds.append(kind)
        masks.append(mask)
    box_tensor = torch.tensor(boxes, dtype=torch.long).reshape(-1, 4)
    mask_tensor = torch.stack(masks) if masks else torch.zeros(0, size, size, dtype=torch.bool)
    return Radiograph(image.float(), box_tensor, kinds, mask_tensor)


class SyntheticCXR(Dataset[tuple[torch.Tensor, int, torch.Tensor]]):
    """A deterministic data set of synthetic radiographs, half with foreign objects.

    Item ``i`` is ``(image (3, size, size), label, boxes (K, 4))``: the grey image repeated
    over three channels, label 1 when it carries objects (odd ``i``), 0 otherwise.
    """

    def __init__(self, n: int, size: int = 224, seed: int = 0, small_central: bool = False) -> None:
        self.n, self.size, self.seed, self.small_central = n, size, seed, small_central

    def __len__(self) -> int:
        return self.n

    def radiograph(self, i: int) -> Radiograph:
        if not 0 <= i < self.n:
            raise IndexError(i)
        image_seed = self.seed * 1_000_003 + i
        positive = i % 2 == 1
        if positive:
            count = (
                1
                if self.small_central
                else 1
                + int(torch.randint(3, (), generator=torch.Generator().manual_seed(image_seed)))
            )
        else:
            count = 0
        return make_radiograph(self.size, image_seed, count, self.small_central)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        r = self.radiograph(i)
        return r.image.expand(3, -1, -1).clone(), int(r.boxes.shape[0] > 0), r.boxes
