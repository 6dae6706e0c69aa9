"""Data loaders of images with boxes: collate, padded boxes, PointingGame and evaluate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

import normgrad
from normgrad import ArgumentTypeError, InvalidArgumentError, ShapeError, metrics

from .conftest import examples
from .models import TinyCNN, seeded
from .reference.pointing import reference_box_mask, reference_pointing_game

SIZE = 16


def _boxes(rng: torch.Generator, count: int) -> torch.Tensor:
    """``count`` random inclusive boxes inside (and a little outside) a SIZE x SIZE image."""
    lo = torch.randint(-2, SIZE, (count, 2), generator=rng)
    extent = torch.randint(0, 6, (count, 2), generator=rng)
    return torch.cat([lo, lo + extent], dim=1)


class BoxedImages(Dataset[tuple[torch.Tensor, int, torch.Tensor]]):
    """Random images with 0 to 3 boxes each, as a detection data set gives them."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, SIZE, SIZE, generator=rng)
        self.labels = torch.randint(0, 5, (n,), generator=rng).tolist()
        counts = torch.randint(0, 4, (n,), generator=rng).tolist()
        self.boxes = [_boxes(rng, k) for k in counts]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.images[i], self.labels[i], self.boxes[i]


def test_default_collate_cannot_batch_varying_boxes() -> None:
    """The reason for metrics.collate: torch's default collate refuses these samples."""
    data = BoxedImages(6)
    assert len({b.shape[0] for b in data.boxes}) > 1
    with pytest.raises(RuntimeError):
        next(iter(DataLoader(data, batch_size=6)))


@examples(25)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5), tolerance=st.sampled_from([0, 2, 4.5]))
def test_collated_and_padded_boxes_score_like_a_pixel_loop(
    seed: int, n: int, tolerance: float
) -> None:
    data = BoxedImages(n, seed)
    images, labels, boxes = metrics.collate([data[i] for i in range(n)])
    assert images.shape == (n, 3, SIZE, SIZE)
    assert labels is not None and labels.tolist() == data.labels
    assert [b.tolist() for b in boxes] == [b.tolist() for b in data.boxes]

    saliency = torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    masks = torch.stack([reference_box_mask(b, (SIZE, SIZE)) for b in data.boxes])
    expected = reference_pointing_game(saliency[:, 0], masks, tolerance, [1.0, 1.0])

    # the same boxes padded to one (N, K, 4) tensor, padding rows all NaN
    most = max(1, *(b.shape[0] for b in data.boxes))
    padded = torch.full((n, most, 4), math.nan)
    for i, b in enumerate(data.boxes):
        padded[i, : b.shape[0]] = b.float()
    for regions in (boxes, padded):
        got = metrics.pointing_game(saliency, regions, tolerance=tolerance)
        assert got.tolist() == pytest.approx(expected, nan_ok=True)


def test_equal_box_counts_collated_by_torch_are_read_as_padded_boxes() -> None:
    """Default collate stacks equal counts to (N, K, 4): read as one box row per image."""
    boxes = torch.tensor([[[0, 0, 1, 1], [6, 6, 7, 7]], [[2, 2, 3, 3], [2, 2, 3, 3]]])
    saliency = torch.zeros(2, 1, 8, 8)
    saliency[0, 0, 7, 7] = 1  # inside the first image's second box
    saliency[1, 0, 7, 7] = 1  # far from the second image's boxes
    hits = metrics.pointing_game(saliency, boxes, tolerance=1)
    assert hits.tolist() == [1.0, 0.0]


def test_dataloader_feeds_pointing_game_and_evaluate() -> None:
    data = BoxedImages(10, seed=3)
    loader = DataLoader(data, batch_size=4, collate_fn=metrics.collate)
    model = seeded(TinyCNN(num_classes=5))
    explainer = normgrad.NormGrad(model, "conv3", vil="conv1x1")

    game = metrics.PointingGame(tolerance=3)
    expected: list[float] = []
    for x, labels, boxes in loader:
        saliency = explainer(x, labels)
        game.update(saliency, boxes)
        masks = torch.stack([reference_box_mask(b, (SIZE, SIZE)) for b in boxes])
        expected += reference_pointing_game(saliency[:, 0], masks, 3, [1.0, 1.0])
    counted = [e for e in expected if not math.isnan(e)]
    result = game.compute()
    assert (result.hits, result.total) == (sum(counted), len(counted))
    assert result.skipped == len(expected) - len(counted) > 0

    table = normgrad.evaluate(model, {"NormGrad": explainer}, loader, tolerance=3, progress=False)
    assert (table["NormGrad"].hits, table["NormGrad"].total) == (result.hits, result.total)


def test_collate_masks_and_predicted_class() -> None:
    masks = [torch.zeros(1, 8, 8, dtype=torch.bool), torch.ones(8, 8, dtype=torch.bool)]
    samples = [(torch.zeros(3, 8, 8), None, masks[0]), (torch.zeros(3, 8, 8), None, masks[1])]
    images, labels, regions = metrics.collate(samples)
    assert images.shape == (2, 3, 8, 8) and labels is None
    assert isinstance(regions, torch.Tensor) and regions.shape == (2, 8, 8)
    assert regions.sum().item() == 64


def test_collate_and_padding_errors_say_what_to_do() -> None:
    image, box = torch.zeros(3, 8, 8), torch.tensor([[0, 0, 1, 1]])
    with pytest.raises(ArgumentTypeError, match=r"batch: expected a non-empty list"):
        metrics.collate([])
    with pytest.raises(ArgumentTypeError, match=r"batch\[1\]: expected a sample \(image, label"):
        metrics.collate([(image, 0, box), (image, 0)])  # type: ignore[list-item]
    with pytest.raises(ShapeError, match=r"batch\[1\]: expected images of one shape .* \(resize"):
        metrics.collate([(image, 0, box), (torch.zeros(3, 9, 8), 0, box)])
    with pytest.raises(InvalidArgumentError, match=r"batch\[1\]: .* got a mix"):
        metrics.collate([(image, 0, box), (image, None, box)])
    for label in (0.7, torch.tensor([1, 0])):
        with pytest.raises(ArgumentTypeError, match=r"batch\[1\]: expected the label to be"):
            metrics.collate([(image, 0, box), (image, label, box)])
    labels = metrics.collate([(image, np.int64(1), box), (image, torch.tensor(0), box)])[1]
    assert labels is not None and labels.dtype == torch.long and labels.tolist() == [1, 0]
    with pytest.raises(ArgumentTypeError, match=r"batch\[1\]: expected the regions .* got a mix"):
        metrics.collate([(image, 0, box), (image, 0, torch.ones(8, 8, dtype=torch.bool))])

    saliency = torch.rand(2, 1, 8, 8)
    partly = torch.tensor([[[0, 0, 1, 1]], [[0, math.nan, 1, 1]]])
    with pytest.raises(InvalidArgumentError, match=r"regions\[1\]: expected finite boxes"):
        metrics.pointing_game(saliency, partly)
    with pytest.raises(ArgumentTypeError, match=r"masks must be boolean: pass masks.bool\(\)"):
        metrics.pointing_game(saliency, torch.zeros(2, 8, 8))
    with pytest.raises(ArgumentTypeError, match=r"padded to one tensor \(N, K, 4\)"):
        metrics.pointing_game(saliency, torch.zeros(2, 3, 5))
    with pytest.raises(ShapeError, match=r"one box tensor per map \(2\), got 3"):
        metrics.pointing_game(saliency, torch.zeros(3, 1, 4))
