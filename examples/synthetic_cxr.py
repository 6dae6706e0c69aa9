"""Synthetic chest radiographs with foreign objects, generated on the fly.

Each image has a body, two dark lung fields, a heart shadow, bright bone that is never a
target (spine with vertebrae, ribs, clavicles, shoulders, the heart's border), a random
contrast and exposure, and, by default, the texture and noise of a real radiograph
(``texture=True``; ``texture=False`` gives the earlier, smooth images):

- **lung texture**: the vascular markings, tapering curves that branch out from each hilum
  and fade towards the periphery, over an anatomical background whose power spectrum falls
  as ``1 / f**3`` (the power law measured on chest and breast radiographs, with exponents
  of about 3);
- **trabecular bone**: a fine, high-frequency texture inside the bone (spine, clavicles,
  shoulders, ribs), multiplying its brightness by about ``1 +- 0.08``;
- **quantum noise**: Poisson noise of the photons that reach each pixel, drawn after the
  objects are added (so the brighter, denser parts are noisier). A digital chest
  radiograph reaches its detector with about 30,000 photons per mm^2 per µGy (RQA5 beam),
  at about 2.5 µGy behind the lungs; with a quantum efficiency of 0.6 and a 400 mm field
  of view, a pixel of a ``size``-pixel image receives ``45,000 * (400 / size)**2``
  effective quanta unattenuated: the relative noise is 0.1 % at 96 px and 0.7 % at 600 px
  before attenuation, as faint at this resolution as it is on a real image resized to it. Half of the images carry 1 to 3 foreign objects (buttons,
clips, rings, thin wires: shapes of several sizes and contrasts; most are radiopaque like
metal, brighter than the ribs and up to brighter than the spine, one in four is faint, no
brighter than a rib) placed anywhere in the lung fields, each with its exact bounding box
(the extent of the pixels it brightens). The brightest pixels of an image are therefore
often bone, not an object: a map that merely follows the input's intensity does not find
the objects. With
``small_central=True`` every positive image carries one small object near the image centre,
like the left ventricular outflow tract in the paper's LVOT data, where the centre map
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


def _power_law_noise(size: int, gen: torch.Generator, beta: float, low: float) -> torch.Tensor:
    """Gaussian noise of unit variance whose power spectrum falls as ``1 / f**beta``.

    ``f`` in cycles per image; frequencies below ``low`` are left out (the image's slow
    variation is modelled separately).
    """
    white = torch.randn(size, size, generator=gen, dtype=torch.float64)
    f = torch.fft.fftfreq(size, d=1 / size, dtype=torch.float64)
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    gain = torch.where(radius >= low, radius.clamp_min(low) ** (-beta / 2), 0.0)
    field = torch.fft.ifft2(torch.fft.fft2(white) * gain).real
    return (field - field.mean()) / field.std().clamp_min(1e-12)


def _vessels(
    size: int, hila: list[tuple[float, float, float]], gen: torch.Generator
) -> torch.Tensor:
    """Vascular markings: tapering curves from each hilum out towards the lung's edge.

    Each curve is drawn as Gaussian blobs along it, each in a window of three widths around
    its centre (the brightest blob wins where they overlap).
    """
    t = torch.linspace(0, 1, 32)
    ys, xs, widths, contrasts = [], [], [], []
    for hy, hx, side in hila:  # side: -1 for the lung on the image's left, +1 on its right
        for _ in range(10):
            angle = _u(gen, -1.2, 1.2)  # 0 points straight out to the side
            length = _u(gen, 0.12, 0.28)
            ey, ex = hy + length * math.sin(angle), hx + side * length * math.cos(angle)
            my = (hy + ey) / 2 + _u(gen, -0.04, 0.04)
            mx = (hx + ex) / 2 + _u(gen, -0.04, 0.04)
            ys.append((1 - t) ** 2 * hy + 2 * (1 - t) * t * my + t**2 * ey)
            xs.append((1 - t) ** 2 * hx + 2 * (1 - t) * t * mx + t**2 * ex)
            widths.append((0.012 * (1 - 0.7 * t)).clamp_min(0.5 / size))  # tapers outwards
            contrasts.append(_u(gen, 0.05, 0.1) * (1 - 0.8 * t))  # fades outwards
    py, px = torch.cat(ys) * size - 0.5, torch.cat(xs) * size - 0.5  # in pixel indices
    width, contrast = torch.cat(widths) * size, torch.cat(contrasts)
    reach = math.ceil(3 * float(width.max()))
    offsets = torch.arange(-reach, reach + 1)
    rows = py.round()[:, None, None] + offsets[None, :, None]  # (P, R, 1)
    cols = px.round()[:, None, None] + offsets[None, None, :]  # (P, 1, R)
    d2 = (rows - py[:, None, None]) ** 2 + (cols - px[:, None, None]) ** 2
    value = contrast[:, None, None] * torch.exp(-d2 / width[:, None, None] ** 2)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    index = (rows.clamp(0, size - 1) * size + cols.clamp(0, size - 1)).long()
    out = torch.zeros(size * size)
    out.scatter_reduce_(0, index.flatten(), (value * inside).flatten(), "amax")
    return out.reshape(size, size)


def _texture_generator(seed: int) -> torch.Generator:
    """The texture's own random numbers, so the smooth images stay as they were."""
    return torch.Generator().manual_seed((seed * 6364136223846793005 + 1442695040888963407) % 2**63)


def _anatomy(
    size: int, gen: torch.Generator, texture: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The background radiograph and the lung-field mask.

    Bone is bright, as on a real radiograph: spine (with vertebrae), clavicles, ribs over the
    lungs, shoulders, and the heart's border; none of it is a target, and its brightness
    varies from image to image as much as the objects' does. With a ``texture`` generator,
    the lungs get their vascular markings and anatomical background, and the bone its
    trabecular texture.
    """
    y, x = _grid(size)
    trabecular = (
        1 + 0.08 * _power_law_noise(size, texture, beta=1.0, low=size / 8).float().clamp(-2.5, 2.5)
        if texture is not None
        else None
    )

    def bone(part: torch.Tensor) -> torch.Tensor:
        return part if trabecular is None else part * trabecular

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
    image = image + _u(gen, 0.3, 0.6) * bone(spine)
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
    image = image + _u(gen, 0.1, 0.3) * bone(ribs) * lungs.clamp(0.4, 1) * body
    # clavicles: bright bars from the top of the spine out to the shoulders
    height = 0.17 + shift_y + _u(gen, -0.02, 0.02)
    offset = (x - cx).abs()
    clavicle_line = height - 0.25 * (offset - 0.2) ** 2 + 0.05 * offset
    clavicles = torch.exp(-(((y - clavicle_line) / 0.018) ** 2)) * (offset > 0.04) * (offset < 0.38)
    image = image + _u(gen, 0.2, 0.45) * bone(clavicles) * body
    # shoulders: the humeral heads in the upper corners
    shoulders = torch.maximum(
        _smooth_step(_ellipse(y, x, 0.16 + shift_y, cx - 0.42, 0.08, 0.07), 0.4),
        _smooth_step(_ellipse(y, x, 0.16 + shift_y, cx + 0.42, 0.08, 0.07), 0.4),
    )
    image = image + _u(gen, 0.2, 0.45) * bone(shoulders)
    # low-frequency variation and noise
    tilt = _u(gen, -0.08, 0.08) * (x - 0.5) + _u(gen, -0.08, 0.08) * (y - 0.5)
    image = image + tilt + _u(gen, 0.01, 0.03) * torch.randn(size, size, generator=gen)
    if texture is not None:
        hila = [(0.45 + shift_y, cx - 0.12, -1.0), (0.45 + shift_y, cx + 0.12, 1.0)]
        background = 0.03 * _power_law_noise(size, texture, beta=3.0, low=2.0).float()
        image = image + (background + _vessels(size, hila, texture)) * lungs * body
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


# quantum noise: effective quanta per mm^2 reaching the detector unattenuated (about
# 30,000 photons per mm^2 per µGy in an RQA5 beam, 2.5 µGy, quantum efficiency 0.6), the
# field of view, and the attenuation (in nepers) of a pixel of brightness 1
QUANTA_PER_MM2 = 45_000.0
FIELD_OF_VIEW_MM = 400.0
ATTENUATION_PER_UNIT = 2.3


def quantum_noise_std(image: torch.Tensor, size: int) -> torch.Tensor:
    """The standard deviation of the quantum noise of each pixel, in brightness units.

    A pixel of brightness ``v`` lets through ``exp(-2.3 v)`` of the quanta that reach it;
    the relative error of a count ``n`` is ``1 / sqrt(n)``, and brightness is the log of the
    attenuation, so its error is ``1 / (2.3 sqrt(n))``.
    """
    quanta = QUANTA_PER_MM2 * (FIELD_OF_VIEW_MM / size) ** 2
    transmitted = quanta * torch.exp(-ATTENUATION_PER_UNIT * image.clamp_min(0))
    return 1 / (ATTENUATION_PER_UNIT * transmitted.sqrt())


def make_radiograph(
    size: int = 224,
    seed: int = 0,
    n_objects: int = 0,
    small_central: bool = False,
    object_intensity: float = 1.0,
    texture: bool = True,
) -> Radiograph:
    """One synthetic radiograph with ``n_objects`` foreign objects.

    Args:
        size: image side in pixels.
        seed: the image's seed.
        n_objects: number of objects (0 for a clean image).
        small_central: small objects near the centre instead of anywhere in the lungs.
        object_intensity: brightness added by an object (0 draws nothing but consumes the
            same random numbers, so the same seed gives the same background).
        texture: lung and bone texture and quantum noise (see the module's docstring);
            ``False`` gives the earlier smooth images, pixel for pixel.
    """
    gen = torch.Generator().manual_seed(seed)
    texture_gen = _texture_generator(seed) if texture else None
    image, lungs = _anatomy(size, gen, texture_gen)
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
    if texture_gen is not None:  # drawn after the objects: they are part of what attenuates
        quanta = torch.randn(size, size, generator=texture_gen)
        image = image + quantum_noise_std(image, size) * quanta
    box_tensor = torch.tensor(boxes, dtype=torch.long).reshape(-1, 4)
    mask_tensor = torch.stack(masks) if masks else torch.zeros(0, size, size, dtype=torch.bool)
    return Radiograph(image.float(), box_tensor, kinds, mask_tensor)


class SyntheticCXR(Dataset[tuple[torch.Tensor, int, torch.Tensor]]):
    """A deterministic data set of synthetic radiographs, half with foreign objects.

    Item ``i`` is ``(image (3, size, size), label, boxes (K, 4))``: the grey image repeated
    over three channels, label 1 when it carries objects (odd ``i``), 0 otherwise.
    """

    def __init__(
        self,
        n: int,
        size: int = 224,
        seed: int = 0,
        small_central: bool = False,
        texture: bool = True,
    ) -> None:
        self.n, self.size, self.seed = n, size, seed
        self.small_central, self.texture = small_central, texture

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
        return make_radiograph(
            self.size, image_seed, count, self.small_central, texture=self.texture
        )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        r = self.radiograph(i)
        return r.image.expand(3, -1, -1).clone(), int(r.boxes.shape[0] > 0), r.boxes
