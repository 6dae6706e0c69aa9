"""Host synchronisations per metric call, counted with the dispatch-mode helpers the
explainers' counts use (``dispatch_count``): the Pointing Game, its distances, the energy
game and every accumulator read the device at most once per call; the peaks, FROC and the
multi-object game as few times as their variable-length search needs (stated in their
docstrings)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from normgrad import metrics
from normgrad.metrics import Box, Ellipse, Polygon
from normgrad.metrics._accumulator import Mean

from .dispatch_count import count


def _regions() -> dict[str, Any]:
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:3, 8:16, 8:20] = True
    boxes = [torch.tensor([[4.0, 4.0, 12.0, 10.0], [20.0, 2.0, 30.0, 9.0]])] * 3
    boxes.append(torch.zeros(0, 4))
    padded = torch.full((4, 2, 4), math.nan)
    padded[:3] = boxes[0]
    shapes: list[list[Box | Ellipse | Polygon]] = [
        [Box(4, 4, 12, 10), Ellipse(1, 1, 9, 9)],
        [Polygon([(3, 3), (20, 5), (9, 25)])],
        [],
        [Ellipse(10, 10, 30, 20)],
    ]
    far = [b * 10 for b in boxes]  # outside the map: warned, with the same one read
    return {"masks": masks, "boxes": boxes, "padded": padded, "shapes": shapes, "far": far}


def _maps() -> torch.Tensor:
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def _syncs(call: Callable[[], object]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # regions outside the map
        return count(call).sync_count


@pytest.mark.parametrize("form", ["masks", "boxes", "padded", "shapes", "far", "prepared"])
def test_the_pointing_game_and_its_distances_read_once(form: str) -> None:
    maps = _maps()
    regions = _regions()
    given = regions[form] if form != "prepared" else regions["boxes"]
    if form == "prepared":  # checked once: none left to read
        given = metrics.prepare_regions(given, (4, 32, 32))
    assert _syncs(lambda: metrics.pointing_game(maps, given, tolerance=3)) <= 1
    assert _syncs(lambda: metrics.pointing_distances(maps, given)) <= 1
    game = metrics.PointingGame(tolerance=3)
    assert _syncs(lambda: game.update(maps, given)) <= 1


@pytest.mark.parametrize("form", ["masks", "boxes", "shapes", "far"])
def test_the_energy_game_reads_once_on_a_device(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import normgrad.metrics._energy as energy_module

    maps, regions = _maps(), _regions()[form]
    monkeypatch.setattr(energy_module, "_BY_WINDOW", ())  # the path of every device but the CPU
    assert _syncs(lambda: metrics.energy_pointing_game(maps, regions)) <= 1
    monkeypatch.undo()
    # on the CPU the windows of boxes and shapes are read too (host memory)
    assert _syncs(lambda: metrics.energy_pointing_game(maps, regions)) <= 2


def test_every_accumulator_reads_once_per_call() -> None:
    maps, regions = _maps(), _regions()
    game = metrics.PointingGame(tolerance=3)
    assert _syncs(lambda: game.add(torch.tensor([1.0, 0.0, math.nan]))) <= 1
    mean = Mean()
    assert _syncs(lambda: mean.update(torch.tensor([0.5, math.nan]))) <= 1
    froc = metrics.FROC(k=3, min_distance=2)
    scores, positive = torch.tensor([0.9, 0.5]), torch.tensor([True, False])
    assert _syncs(lambda: froc.add(scores, positive, images=2, objects=1)) <= 1
    froc.update(maps, regions["boxes"])
    assert _syncs(froc.compute) == 0
    for accumulator in (game, mean, froc):
        other = type(accumulator)(**({"k": 3, "min_distance": 2} if accumulator is froc else {}))
        if accumulator is game:
            other = metrics.PointingGame(tolerance=3)
        assert _syncs(lambda a=accumulator, o=other: a.merge(o)) == 0  # type: ignore[misc]


def test_peaks_froc_and_the_multi_object_game_read_per_round_of_the_search() -> None:
    """One round of the search (the first stretches hold the peaks), one chunk of maps,
    one pass of the suppression: the candidates, their count per map, the peaks kept per
    map; then every check (and FROC's detections, the multi-object game's count first)."""
    maps, regions = _maps(), _regions()
    assert _syncs(lambda: metrics.peaks(maps, 5, min_distance=3)) <= 4
    assert _syncs(lambda: metrics.froc(maps, regions["boxes"], k=5, min_distance=3)) <= 4
    assert _syncs(lambda: metrics.froc(maps, regions["shapes"], k=5, min_distance=3)) <= 4
    assert _syncs(lambda: metrics.multi_pointing_game(maps, regions["boxes"])) <= 5


@pytest.mark.parametrize("target", [None, 2, [0, 1, 2, 1], "tensor"])
def test_deletion_and_insertion_read_once(target: Any) -> None:
    """The model's passes (several calls of ``batch_size`` images) run without a read of
    the device between them; the images', the maps' and the classes' checks are read
    once, at the end."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )  # fmt: skip
    x, maps = torch.rand(4, 3, 12, 12), _maps()[:, :, :12, :12]
    target = torch.tensor([2, 0, 1, 1]) if target == "tensor" else target

    def call() -> object:
        return metrics.deletion_insertion(model, x, maps, steps=6, target=target, batch_size=5)

    assert _syncs(call) <= 1
