"""The paper's protocol on a local copy of the real Object-CXR data set.

Object-CXR (JF Healthcare) cannot ship with normgrad; if you have it, point this script at
it. Expected layout (as distributed)::

    ROOT/train.csv   ROOT/train/*.jpg
    ROOT/dev.csv     ROOT/dev/*.jpg

Each CSV has a header (``image_name,annotation`` or ``image_path,annotation``) and one row
per image. The annotation is empty for an image without foreign objects, else shapes
separated by ``;``: ``0 x1 y1 x2 y2`` (rectangle), ``1 x1 y1 x2 y2`` (ellipse: the corners
of its box) or ``2 x1 y1 x2 y2 ... xn yn`` (polygon), in pixels, origin at the upper left.
Each shape's target region for the Pointing Game is its bounding box (as in the paper);
``parse_shapes`` and ``ObjectCXR.shapes`` give the exact shapes as normgrad regions
(``normgrad.metrics.Box``, ``Ellipse``, ``Polygon``), for ``metrics.froc`` and the other
object metrics.

    python examples/object_cxr.py --root /data/object-CXR [--size 600] [--quick]

Images are read in grey, resized to ``size x size`` and repeated over three channels, as in
the paper; boxes are scaled with them.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol

from normgrad import metrics

SHAPES = {0: "rectangle", 1: "ellipse", 2: "polygon"}


def parse_shapes(text: str) -> list[metrics.Shape]:
    """The shapes of one annotation cell as normgrad regions: :class:`~normgrad.metrics.Box`
    (type 0), :class:`~normgrad.metrics.Ellipse` (type 1, by the corners of its box) and
    :class:`~normgrad.metrics.Polygon` (type 2)."""
    shapes: list[metrics.Shape] = []
    for shape in text.split(";"):
        values = shape.split()
        if not values:
            continue
        kind = int(values[0])
        coords = [float(v) for v in values[1:]]
        if kind not in SHAPES:
            raise ValueError(
                f"annotation: unknown shape type {kind} in {shape!r} (expected 0, 1 or 2)"
            )
        if len(coords) < 4 or len(coords) % 2:
            raise ValueError(
                f"annotation: expected pairs of coordinates after the type, got {shape!r}"
            )
        if kind in (0, 1) and len(coords) != 4:
            raise ValueError(f"annotation: a {SHAPES[kind]} has 4 coordinates, got {shape!r}")
        if kind == 0:
            shapes.append(metrics.Box.from_corners(*coords))
        elif kind == 1:
            shapes.append(metrics.Ellipse.from_corners(*coords))
        else:
            shapes.append(metrics.Polygon(list(zip(coords[0::2], coords[1::2]))))
    return shapes


def parse_annotation(text: str) -> list[list[float]]:
    """Bounding boxes ``[xmin, ymin, xmax, ymax]`` of the shapes in one annotation cell."""
    return [list(shape.bounds()) for shape in parse_shapes(text)]


def scale_shape(shape: metrics.Shape, sx: float, sy: float) -> metrics.Shape:
    """A shape on the resized image: a box covers every pixel its pixels touch
    (:func:`scale_box`); ellipses and polygons follow the pixel centres, which a resize by
    ``s`` (half-pixel centres, as PIL and ``align_corners=False``) maps from ``x`` to
    ``(x + 0.5) s - 0.5``."""
    if isinstance(shape, metrics.Box):
        return metrics.Box(*scale_box(shape.bounds(), sx, sy))

    def move(x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5

    if isinstance(shape, metrics.Ellipse):
        x0, y0, x1, y1 = shape.bounds()
        return metrics.Ellipse(*move(x0, y0), *move(x1, y1))
    if isinstance(shape, metrics.Polygon):
        return metrics.Polygon([move(x, y) for x, y in shape.vertices])
    raise TypeError(f"shape: expected a Box, Ellipse or Polygon, got {type(shape).__name__}")


def read_cells(path: Path) -> list[str]:
    """The annotation cell of every row of an Object-CXR CSV file (header checked)."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return [row[1] if len(row) > 1 else "" for row in reader if row]


def read_annotations(path: Path) -> list[tuple[str, list[list[float]]]]:
    """``(image name, boxes)`` for every row of an Object-CXR CSV file."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if (
            len(header) < 2
            or header[0] not in ("image_name", "image_path")
            or header[1] != "annotation"
        ):
            raise ValueError(
                f"{path}: expected the header 'image_name,annotation', got {','.join(header)!r}"
            )
        return [(row[0], parse_annotation(row[1] if len(row) > 1 else "")) for row in reader if row]


def scale_box(box: Sequence[float], sx: float, sy: float) -> list[int]:
    """Map an inclusive pixel box to the resized image, covering every pixel it touches."""
    xmin, ymin, xmax, ymax = box
    return [
        math.floor(xmin * sx),
        math.floor(ymin * sy),
        math.ceil((xmax + 1) * sx) - 1,
        math.ceil((ymax + 1) * sy) - 1,
    ]


class ObjectCXR(Dataset[tuple[torch.Tensor, int, torch.Tensor]]):
    """Object-CXR images ``(3, size, size)`` in [0, 1], labels (1: foreign objects), boxes."""

    def __init__(
        self, csv_path: Path, image_dir: Path, size: int = 600, limit: int | None = None
    ) -> None:
        self.rows = read_annotations(csv_path)[:limit]
        self.texts = [parse_shapes(text) for text in read_cells(csv_path)[:limit]]
        self.image_dir, self.size = image_dir, size

    def __len__(self) -> int:
        return len(self.rows)

    def shapes(self, i: int) -> list[metrics.Shape]:
        """The exact shapes of image ``i`` on the resized image (for ``metrics.froc``)."""
        from PIL import Image  # installed with torchvision

        name, _ = self.rows[i]
        with Image.open(self.image_dir / Path(name).name) as img:
            width, height = img.size
        return [scale_shape(s, self.size / width, self.size / height) for s in self.texts[i]]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        from PIL import Image  # installed with torchvision

        name, boxes = self.rows[i]
        path = self.image_dir / Path(name).name
        with Image.open(path) as img:
            width, height = img.size
            grey = img.convert("L").resize((self.size, self.size), Image.BILINEAR)
            data = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
        image = data.view(self.size, self.size).float() / 255
        sx, sy = self.size / width, self.size / height
        scaled = [scale_box(b, sx, sy) for b in boxes]
        box_tensor = torch.tensor(scaled, dtype=torch.long).reshape(-1, 4)
        return image.expand(3, -1, -1).clone(), int(len(boxes) > 0), box_tensor


def main(argv: Sequence[str] | None = None) -> list[protocol.Run]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, required=True, help="folder with train.csv, train/, dev.csv, dev/"
    )
    parser.add_argument("--limit", type=int, help="use only the first N images of each split")
    args, rest = parser.parse_known_args(argv)
    config = protocol.parse(rest)
    if "--size" not in rest and "--quick" not in rest:
        config.size = 600  # the paper's resolution for Object-CXR
    if "--out" not in rest:
        config.out = Path("outputs/object-cxr")
    limit_train = (
        args.limit if args.limit is not None else (config.train if "--quick" in rest else None)
    )
    limit_test = (
        args.limit if args.limit is not None else (config.test if "--quick" in rest else None)
    )
    train_set = ObjectCXR(args.root / "train.csv", args.root / "train", config.size, limit_train)
    test_set = ObjectCXR(args.root / "dev.csv", args.root / "dev", config.size, limit_test)
    config.train, config.test = len(train_set), len(test_set)
    runs = protocol.run_protocol(train_set, test_set, config)
    report = protocol.tables(runs, config).replace("Synthetic chest radiographs", "Object-CXR", 1)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "tables.md").write_text(report)
    protocol.write_csv(runs, config.out / "results.csv")
    print("\n" + report)
    return runs


if __name__ == "__main__":
    main()
