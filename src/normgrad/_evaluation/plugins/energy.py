"""The energy-based Pointing Game as a column of ``evaluate``."""

from __future__ import annotations

import torch

from ...metrics import energy_pointing_game
from ..fields import number
from .base import Batch, EvaluationMetric, Values


class EnergyPointingGame(EvaluationMetric):
    """``"energy"``: the share of each map's positive mass on its regions, the mean over
    the images with a region."""

    columns = (("energy", "energy"),)
    fields = (number("energy"),)

    def score(self, batch: Batch, method: str, saliency: torch.Tensor) -> dict[str, Values]:
        energy = batch.later(energy_pointing_game(saliency, batch.regions))
        return {"energy": energy.values}
