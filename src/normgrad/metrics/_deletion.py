r"""Deletion and insertion (Petsiuk et al., 2018, RISE): does the model follow the map?

The one metric that runs a model, so it takes the model's mode switch from ``_model.hooks``
(the owner of model modes) and reads ``target`` as every explainer does (``_model.targets``);
it registers no hook and computes no gradient.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union, cast

import torch
from torch import nn
from typing_extensions import TypedDict

from .._checks import check_finite_input, check_input, check_known, check_positive_int
from .._deferred import deferred_checks
from .._errors import ArgumentTypeError, InvalidArgumentError, ShapeError, describe
from .._model.hooks import explaining
from .._model.targets import ClassTarget, Target, read_logits, resolve_target, target_classes
from .._transfer import to_device
from ._maps import as_maps
from ._smoothing import smooth

Baseline = Union[Literal["zeros", "blur", "mean"], torch.Tensor]
"""What deletion removes pixels towards and insertion starts from: ``"zeros"``, ``"blur"``,
``"mean"`` or a tensor broadcastable to the inputs."""
_BASELINES = ("zeros", "blur", "mean")
# the blur: a sampled Gaussian of 11 taps and sigma 5, separable, reflection padding (not
# RISE's gkern(11, 5), a far flatter kernel applied with zero padding: see the docstring)
_BLUR_SIGMA, _BLUR_SIZE = 5.0, 11


class DeletionOptions(TypedDict, total=False):
    """Settings of [`deletion_insertion`][normgrad.metrics.deletion_insertion], as a dict: what
    [`evaluate`][normgrad.evaluate] passes on (``deletion_options=``). A key left out keeps the
    metric's default.

    Examples:
        >>> from normgrad.metrics import DeletionOptions
        >>> options: DeletionOptions = {"steps": 10, "baseline": "blur"}
    """

    steps: int
    """The number of steps of each curve, ``>= 1`` and at most the number of pixels."""
    baseline: Baseline
    """``"zeros"``, ``"blur"``, ``"mean"``, or a tensor broadcastable to the images."""
    batch_size: int
    """Images per model call (the memory bound; the results do not depend on it)."""


_OPTIONS = tuple(DeletionOptions.__annotations__)


def check_options(options: object, argument: str | None = None) -> DeletionOptions:
    """Settings of ``deletion_insertion``: a mapping with some of the keys of
    ``DeletionOptions``, each value checked; what depends on the images (at most one step
    per pixel, a tensor baseline broadcastable to them) is ``fit_options``'. Errors name
    ``argument`` and its key (``deletion_options['steps']``), or the key alone without
    ``argument``."""
    where = argument or "options"
    expected = f"a dict with keys among {list(_OPTIONS)} (normgrad.metrics.DeletionOptions)"
    if not isinstance(options, Mapping):
        raise ArgumentTypeError(
            f"{where}: expected {expected}, got {describe(options)}; for example "
            f"{where}={{'steps': 10, 'baseline': 'blur'}}"
        )
    check_known(list(options), list(_OPTIONS), where, "key(s)")
    checked: DeletionOptions = {}
    if "steps" in options:
        checked["steps"] = check_positive_int(options["steps"], _key("steps", argument))
    if "baseline" in options:
        checked["baseline"] = _check_baseline(options["baseline"], _key("baseline", argument))
    if "batch_size" in options:
        size = options["batch_size"]
        checked["batch_size"] = check_positive_int(size, _key("batch_size", argument))
    return checked


def with_defaults(options: DeletionOptions) -> DeletionOptions:
    """``options`` with the defaults of ``deletion_insertion`` (its signature, their one
    home) for the keys left out."""
    signature = inspect.signature(deletion_insertion).parameters
    full = cast(DeletionOptions, {key: signature[key].default for key in _OPTIONS})
    full.update(options)
    return full


def _key(key: str, argument: str | None) -> str:
    return key if argument is None else f"{argument}[{key!r}]"


def fit_options(
    options: DeletionOptions, shape: Sequence[int], argument: str | None = None
) -> None:
    """Refuse checked ``options`` that do not fit inputs of ``shape`` ``(N, C, *spatial)``:
    more steps than pixels, a tensor baseline not broadcastable to them."""
    pixels = math.prod(shape[2:])
    steps = options.get("steps")
    if steps is not None and steps > pixels:
        raise InvalidArgumentError(
            f"{_key('steps', argument)}: expected at most the {pixels} pixels, got {steps}"
        )
    baseline = options.get("baseline")
    if isinstance(baseline, torch.Tensor):
        dims, to = tuple(baseline.shape)[::-1], tuple(shape)[::-1]
        if len(dims) > len(to) or any(d not in (1, t) for d, t in zip(dims, to)):
            raise ShapeError(
                f"{_key('baseline', argument)}: expected a tensor broadcastable to the inputs' "
                f"shape {tuple(shape)}, got shape {tuple(baseline.shape)}",
                baseline.shape,
            )


def _check_baseline(baseline: object, argument: str) -> Baseline:
    if isinstance(baseline, torch.Tensor):
        if baseline.is_floating_point() and not bool(torch.isfinite(baseline).all()):
            raise InvalidArgumentError(
                f"{argument}: expected a finite baseline tensor, got NaN or infinite values; "
                "every perturbed image would carry them into the model"
            )
        return baseline
    if isinstance(baseline, str) and baseline in _BASELINES:
        return cast(Baseline, baseline)
    error = InvalidArgumentError if isinstance(baseline, str) else ArgumentTypeError
    raise error(
        f"{argument}: expected 'zeros', 'blur', 'mean' or a tensor, got "
        + (repr(baseline) if isinstance(baseline, str) else describe(baseline))
    )


@dataclass(frozen=True)
class DeletionInsertionResult:
    """Deletion and insertion curves of a batch and their areas.

    Attributes:
        fractions: float64 ``(steps + 1,)``: the fraction of pixels changed at each
            point, 0 to 1.
        deletion: ``(N, steps + 1)``: the class probability as the most salient pixels
            are removed.
        insertion: ``(N, steps + 1)``: the class probability as they are revealed on the
            baseline.
        deletion_auc: float64 ``(N,)``: trapezoid area under ``deletion`` (lower is
            better).
        insertion_auc: float64 ``(N,)``: trapezoid area under ``insertion`` (higher is
            better).
        classes: ``(N,)``: the class whose probability is followed.
    """

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_auc: torch.Tensor
    insertion_auc: torch.Tensor
    classes: torch.Tensor


def _logits(output: object, argument: str = "model output") -> torch.Tensor:
    """The model's logits ``(N, C)``; one logit per sample ``(N,)`` or ``(N, 1)`` as
    ``(N, 1)``. The logits are read from the output as the explainers read them."""
    output = output if isinstance(output, torch.Tensor) else read_logits(output)
    if not output.is_floating_point():
        raise ArgumentTypeError(f"{argument}: expected a tensor of logits, got {describe(output)}")
    logits = output.unsqueeze(1) if output.ndim == 1 else output
    if logits.ndim != 2:
        raise ShapeError(
            f"{argument}: expected logits (N, C) or (N,), got shape {tuple(output.shape)}",
            output.shape,
        )
    return logits


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax of logits ``(N, C)``; one logit z is read as two classes' logits (0, z)."""
    if logits.shape[1] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits.float().softmax(dim=1)


def class_target(target: object) -> ClassTarget:
    """``target`` resolved as every explainer resolves it (``_model.targets``): the
    predicted class, one class, or one per sample; a score function is refused, the curves
    follow a class's probability."""
    resolved = resolve_target(cast(Target, target))
    if not isinstance(resolved, ClassTarget):
        raise ArgumentTypeError(
            "target: deletion and insertion follow a class's probability; expected None, a "
            f"class index or one per sample, got {describe(target)}"
        )
    return resolved


def _baseline(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The baseline images of ``x``, from a baseline checked by ``check_options``."""
    if isinstance(baseline, torch.Tensor):
        return torch.broadcast_to(to_device(baseline, x.device, x.dtype), x.shape)
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x)
    n, c, *spatial = x.shape  # "blur"
    flat = x.reshape(n * c, *spatial)
    return smooth(flat, _BLUR_SIGMA, _BLUR_SIZE).reshape(x.shape)


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    *,
    steps: int = 20,
    baseline: Baseline = "zeros",
    target: int | Sequence[int] | torch.Tensor | None = None,
    batch_size: int = 32,
) -> DeletionInsertionResult:
    r"""Deletion and insertion curves and areas of saliency maps (RISE, Petsiuk et al. 2018).

    Pixels are ranked by decreasing saliency, ties in row-major order. After step
    $i = 0, \dots, T$ (``T = steps``) the first $n_i = \lfloor iP/T \rfloor$ of the
    $P$ pixels are changed, in every channel at once: *deletion* replaces them in
    ``x`` by the baseline, *insertion* starts from the baseline and puts them back from
    ``x``. The curve is the probability of the class, softmax of the logits (a model with
    one logit $z$ is read as two classes with logits $(0, z)$: class 1 has
    probability $\sigma(z)$); the area is the trapezoid rule over the fractions
    $n_i / P$ actually changed.

    Cost: ``2 * steps`` forward passes per image (the image itself, the baseline, and
    ``steps - 1`` inner points of each curve), ``batch_size`` images per model call, no
    gradient. The model runs in eval mode and every module's training flag is restored.

    Args:
        model: a classifier returning logits ``(N, C)`` (or one logit ``(N,)``/``(N, 1)``).
        x: inputs ``(N, C, H, W)`` or ``(N, C, D, H, W)``, finite; not modified.
        saliency: maps ``(N, 1, *spatial)`` or ``(N, *spatial)`` at the input's size, finite.
        steps: number of steps ``T``, at most the number of pixels.
        baseline: ``"zeros"``, ``"blur"``, ``"mean"`` (each image's channel means), or a
            tensor broadcastable to ``x``. ``"blur"`` smooths each channel with
            [`smooth`][normgrad.metrics.smooth]``(sigma=5, kernel_size=11)``: a sampled
            Gaussian of 11 taps, weights $e^{-d^2/50}$ for $d = -5, \dots, 5$ normalised to
            sum 1, applied along each spatial axis in turn, with reflection padding (the
            edge pixel is not repeated: scipy's ``mode="mirror"``); the 2-D kernel's corner
            weight is $e^{-1} \approx 0.37$ of its centre. It is not RISE's blur
            (``gkern(11, 5)``: scipy's ``gaussian_filter`` of sigma 5 on an 11×11 delta,
            whose reflected tails make it nearly flat, corner ≈ 0.88 of centre, applied
            with zero padding), so curves with ``"blur"`` are not RISE's numbers.
        target: the class followed: None for the predicted class (first maximum of the
            logits of ``x``), one index, or one per sample.
        batch_size: images per model call (the memory bound).

    Returns:
        ``DeletionInsertionResult``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from normgrad.metrics import deletion_insertion
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        >>> x, saliency = torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4)
        >>> result = deletion_insertion(model, x, saliency, steps=4)
        >>> result.fractions.tolist(), tuple(result.deletion.shape)
        ([0.0, 0.25, 0.5, 0.75, 1.0], (2, 5))
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    x = check_input(x, finite=False)  # its values: with the call's other checks
    with deferred_checks() as checks:  # every check of the call read once, at its end
        check_finite_input(x)  # first, as when it was eager: an error below reads it first
        settings = check_options({"steps": steps, "baseline": baseline, "batch_size": batch_size})
        fit_options(settings, x.shape)
        maps = as_maps(saliency)
        n, spatial = x.shape[0], tuple(x.shape[2:])
        if tuple(maps.shape) != (n, *spatial):
            raise ShapeError(
                f"saliency: expected maps of the input's batch and size {(n, *spatial)}, got "
                f"shape {tuple(saliency.shape)}; upsample the maps to the input first",
                saliency.shape,
            )
        if maps.is_floating_point():
            checks.add(torch.linalg.vector_norm(maps, math.inf), _refuse_non_finite_maps)
        return curves(model, x, maps, class_target(target), settings)


def _refuse_non_finite_maps(largest: list[float]) -> None:
    if not math.isfinite(largest[0]):
        raise InvalidArgumentError("saliency: expected finite maps, got NaN or infinite values")


def curves(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target: ClassTarget,
    options: DeletionOptions,
) -> DeletionInsertionResult:
    """``deletion_insertion`` of checked inputs ``x``, maps ``(N, *spatial)`` of their size,
    a resolved ``target`` and checked ``options`` that fit the inputs."""
    options = with_defaults(options)
    steps, batch_size = options["steps"], options["batch_size"]
    n, pixels = x.shape[0], math.prod(x.shape[2:])
    counts = [i * pixels // steps for i in range(steps + 1)]
    order = maps.reshape(n, -1).argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(pixels, device=x.device).expand(n, -1)
    ranks = torch.empty_like(order).scatter_(1, order, positions)  # each pixel's place
    with explaining(model), torch.no_grad():
        base = _baseline(x, options["baseline"])
        chunks = range(0, n, batch_size)
        logits = torch.cat([_logits(model(x[i : i + batch_size])) for i in chunks])
        classes = target_classes(logits, target, n)
        original = _probabilities(logits).gather(1, classes[:, None])[:, 0]
        deletion = original.new_empty(n, steps + 1)
        insertion = original.new_empty(n, steps + 1)
        deletion[:, 0] = insertion[:, -1] = original
        _perturbed(model, x, base, ranks, counts, classes, batch_size, deletion, insertion)
    fractions = torch.tensor(counts, dtype=torch.float64) / pixels
    grid = to_device(fractions, x.device)
    return DeletionInsertionResult(
        fractions,
        deletion,
        insertion,
        torch.trapezoid(deletion.double(), grid, dim=1),
        torch.trapezoid(insertion.double(), grid, dim=1),
        classes,
    )


def _perturbed(
    model: nn.Module,
    x: torch.Tensor,
    base: torch.Tensor,
    ranks: torch.Tensor,
    counts: list[int],
    classes: torch.Tensor,
    batch_size: int,
    deletion: torch.Tensor,
    insertion: torch.Tensor,
) -> None:
    """Fill the inner points of ``deletion`` and ``insertion`` ``(N, steps + 1)``,
    deletion's last point and insertion's first (the baseline itself): the class's
    probability with the first ``counts[j]`` pixels by ``ranks`` changed, ``batch_size``
    images per model call.

    The images run in a fixed order, each one's place in it computed on the device from
    its position: first every sample's baseline, then for each sample ``i`` and inner
    point ``j = 1 .. steps - 1`` its deletion image, then its insertion image. So the
    probabilities land in one vector whose parts are the curves' points, and nothing is
    read from the device."""
    n, steps = x.shape[0], len(counts) - 1
    pixels = counts[-1]
    inner = steps - 1
    jobs = n + 2 * n * inner
    flat_x, flat_base = x.reshape(n, x.shape[1], -1), base.reshape(n, x.shape[1], -1)
    p = deletion.new_empty(jobs)
    for start in range(0, jobs, batch_size):
        job = torch.arange(start, min(start + batch_size, jobs), device=x.device)
        later = (job - n).clamp_min(0)  # the position among the inner points' images
        baseline = job < n
        rows = torch.where(baseline, job, later // max(2 * inner, 1))
        point = torch.where(baseline, steps, (later // 2) % max(inner, 1) + 1)
        inserting = ~baseline & (later % 2 == 1)
        changed = point * pixels // steps  # counts[point], as counts computes it
        first = ranks[rows] < changed[:, None]  # the pixels changed so far
        keep_x = torch.where(inserting[:, None], first, ~first)
        batch = torch.where(keep_x[:, None], flat_x[rows], flat_base[rows])
        logits = _logits(model(batch.reshape(len(job), *x.shape[1:])))
        p[start : start + len(job)] = _probabilities(logits).gather(1, classes[rows][:, None])[:, 0]
    deletion[:, steps] = insertion[:, 0] = p[:n]  # the baseline itself: both ends
    points = p[n:].view(n, inner, 2)
    deletion[:, 1:steps] = points[..., 0]
    insertion[:, 1:steps] = points[..., 1]
