"""evaluate reports CheXlocalize's IoU and hit rate and the localisation AUPRC beside the
Pointing Game: each image's boxes rasterised to one mask, the values per image equal to
the literal references' (``tests/reference/localization.py``), the columns their means."""

from __future__ import annotations

import math
from pathlib import Path

import torch

import normgrad

from .models import TinyCNN, seeded
from .reference import localization as ref

SIZE = 12


def _data() -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(5)
    out = []
    for _ in range(2):
        x = torch.randn(3, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        boxes = [torch.tensor([[1, 1, 5, 5]]), torch.zeros(0, 4), torch.tensor([[6, 2, 9, 8]])]
        out.append((x, torch.tensor([0, 1, 2]), boxes))
    return out


def _mask(boxes: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.long().tolist():  # inclusive pixel boxes
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def _close(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or abs(x - y) < 1e-12 for x, y in zip(a, b))


def test_the_columns_are_the_references_per_image_and_their_means(tmp_path: Path) -> None:
    model = seeded(TinyCNN()).double()
    explainer = normgrad.Gradient(model)
    result = normgrad.evaluate(
        model,
        {"Gradient": explainer},
        _data(),
        tolerance=2,
        progress=False,
        metrics=("iou", "hit_rate", "auprc"),
        records=tmp_path / "records.csv",
    )
    expected: dict[str, list[float]] = {"iou": [], "hit_rate": [], "auprc": []}
    for x, labels, boxes in _data():
        for m, b in zip(explainer(x, labels)[:, 0].double(), boxes):
            mask = _mask(b)
            expected["iou"].append(ref.iou(ref.otsu_mask(m), mask))
            expected["hit_rate"].append(ref.hit(m, mask))
            expected["auprc"].append(ref.average_precision(m, mask))
    records = [r for r in result.records if r.method == "Gradient"]
    for name, values in expected.items():
        assert _close([r.value(name) for r in records], values), name
        kept = [v for v in values if not math.isnan(v)]
        assert abs(result["Gradient"].value(name) - sum(kept) / len(kept)) < 1e-12
    heading = result.to_markdown().splitlines()[0]
    assert "| mIoU |" in heading and "| hit rate |" in heading and "| AUPRC |" in heading
    again = normgrad.read_records(tmp_path / "records.csv")
    got = [r.value("auprc") for r in again.records if r.method == "Gradient"]
    assert _close(got, expected["auprc"])
