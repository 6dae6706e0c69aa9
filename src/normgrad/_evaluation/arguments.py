"""The arguments of ``evaluate``: each checked before any image is explained, and the
settings of the run (compared on resume and between ranks)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._checks import (
    check_confidence,
    check_kernel_size,
    check_known,
    check_positive_int,
    check_sigma,
    check_spacing,
    check_tolerance,
)
from .._errors import ArgumentTypeError, InvalidArgumentError, describe
from .._explainers.base import Explainer
from .._model.layers import check_model
from ..metrics import DeletionOptions
from ..metrics._deletion import check_options, with_defaults
from . import plugins
from .fingerprint import check_owner, explainer_fingerprint, model_fingerprint
from .scoring import CENTER, RANDOM, SMOOTHED


def _methods(
    explainers: Mapping[str, Explainer], smoothing: bool, reference_rows: bool
) -> list[str]:
    """The rows' names, refusing names that collide with the generated ones."""
    names = list(explainers)
    generated = [SMOOTHED.format(n) for n in names] if smoothing else []
    reserved = {CENTER: "the centre map", RANDOM: "the random point"} if reference_rows else {}
    reserved.update({g: f"the smoothed row of {n!r}" for g, n in zip(generated, names)})
    for name in names:
        if name in reserved:
            raise InvalidArgumentError(
                f"explainers: the name {name!r} is reserved for {reserved[name]}; rename the "
                "explainer"
            )
    return names + generated + ([CENTER, RANDOM] if reference_rows else [])


@dataclass(frozen=True)
class Run:
    """An evaluation's checked arguments: its rows, its metrics, its settings (compared
    on resume and between ranks) and what each batch is scored with."""

    methods: list[str]
    metrics: tuple[str, ...]
    settings: dict[str, Any]
    scoring: dict[str, Any]
    """The keyword arguments of ``score_batch``."""


def checked(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    *,
    tolerance: float,
    spacing: Sequence[float] | None,
    smoothing_sigma: float | None,
    smoothing_kernel_size: int,
    reference_rows: bool,
    confidence: float,
    metrics: Sequence[str],
    froc_k: int,
    deletion_options: DeletionOptions | None,
    compared: bool,
) -> Run:
    """Every argument of ``evaluate`` checked, before any image is explained; the model's
    fingerprint is taken where it is ``compared`` (a records file, several ranks)."""
    check_model(model)
    check_tolerance(tolerance)
    spacing = check_spacing(spacing)
    check_confidence(confidence)
    if smoothing_sigma is not None:
        check_sigma(smoothing_sigma, "smoothing_sigma")
    check_kernel_size(smoothing_kernel_size, "smoothing_kernel_size")
    if not isinstance(explainers, Mapping) or not explainers:
        raise ArgumentTypeError(
            f"explainers: expected a non-empty dict name -> explainer, got {describe(explainers)}"
        )
    for name, explainer in explainers.items():
        if not isinstance(explainer, Explainer):
            raise ArgumentTypeError(
                f"explainers[{name!r}]: expected a normgrad explainer, got {describe(explainer)}"
            )
        check_owner(name, explainer, model)
    methods = _methods(explainers, smoothing_sigma is not None, reference_rows)
    chosen = _check_metrics(metrics)
    check_positive_int(froc_k, "froc_k")
    deletion = _check_deletion_options(deletion_options, chosen)
    settings = {
        "explainers": {n: explainer_fingerprint(e, model) for n, e in explainers.items()},
        "tolerance": float(tolerance),
        "spacing": None if spacing is None else [float(s) for s in spacing],
        "smoothing_sigma": None if smoothing_sigma is None else float(smoothing_sigma),
        "smoothing_kernel_size": smoothing_kernel_size,
        "reference_rows": reference_rows,
        "confidence": float(confidence),
        "metrics": list(chosen),
        "peaks": froc_k if "froc" in chosen else None,
    }
    if "deletion" in chosen or "insertion" in chosen:  # absent without: old files resume
        settings["deletion_options"] = _deletion_settings(deletion)
    if spacing is not None and ("multi" in chosen or "froc" in chosen):
        # the peaks' distances are in spacing units (they were in pixels): a file written
        # before lacks this key, so it is not resumed under the new rule
        settings["peak_distances"] = "spacing units"
    if compared:  # the weights are read only where compared
        settings["model"] = model_fingerprint(model)
    scoring = {
        "tolerance": tolerance, "spacing": spacing, "sigma": smoothing_sigma,
        "kernel_size": smoothing_kernel_size, "reference_rows": reference_rows, "metrics": chosen,
        "peaks": froc_k, "deletion_options": deletion,
    }  # fmt: skip
    # the settings as the records file holds them
    return Run(methods, chosen, json.loads(json.dumps(settings)), scoring)


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    columns = plugins.columns()
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise ArgumentTypeError(
            f"metrics: expected a sequence of names among {sorted(columns)}, got "
            f"{describe(metrics)}"
        )
    check_known(metrics, sorted(columns), "metrics", "metric(s)")
    return tuple(m for m in columns if m in metrics)


def _check_deletion_options(options: object, chosen: tuple[str, ...]) -> DeletionOptions:
    if options is None:
        return {}
    checked = check_options(options, argument="deletion_options")
    if "deletion" not in chosen and "insertion" not in chosen:
        raise InvalidArgumentError(
            "deletion_options: given, but metrics has neither 'deletion' nor 'insertion', so "
            "they would not be used; add 'deletion' or 'insertion' to metrics, or leave "
            "deletion_options out"
        )
    return checked


def _deletion_settings(options: DeletionOptions) -> dict[str, Any]:
    """The deletion and insertion settings as JSON: the defaults of ``deletion_insertion``
    and ``options`` over them, a tensor baseline as its shape, dtype and the sha256 of its
    bytes; without ``batch_size``, on which the results do not depend."""
    full = with_defaults(options)
    resolved: dict[str, Any] = {"steps": full["steps"], "baseline": full["baseline"]}
    baseline = resolved["baseline"]
    if isinstance(baseline, torch.Tensor):
        data = baseline.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        resolved["baseline"] = {
            "shape": list(baseline.shape),
            "dtype": str(baseline.dtype).replace("torch.", ""),
            "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(),
        }
    return resolved
