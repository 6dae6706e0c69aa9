"""The paper's evaluation protocol: Pointing Game for many explainers over a data set."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import InvalidArgumentError, warn, warn_renamed
from .._explainers.base import Explainer
from .._transfer import to_device
from ..metrics import DeletionOptions
from .arguments import Run, checked
from .data import (
    Progress,
    batches,
    check_labels,
    check_order,
    labels_named,
    record_path,
    unpack,
)
from .distributed import exchange, next_call, sampler_indices, world
from .fingerprint import describe_differences
from .per_class import record_ids
from .records import RecordFile, image_order, result_of
from .result import EvaluationResult, Record, outside_note
from .scoring import score_batch


def _device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    data: Iterable[Any],
    *,
    tolerance: float = 15,
    spacing: Sequence[float] | None = None,
    smoothing_sigma: float | None = None,
    smoothing_kernel_size: int = 11,
    reference_rows: bool = True,
    confidence: float = 0.95,
    progress: bool = True,
    records: str | os.PathLike[str] | None = None,
    group: Any = None,
    metrics: Sequence[str] = (),
    froc_k: int = 10,
    deletion_options: DeletionOptions | None = None,
    baselines: bool | None = None,
    peaks: int | None = None,
) -> EvaluationResult:
    """Run the Pointing Game for every explainer over ``data``.

    The explainers share their passes (see [`explain_shared`][normgrad.explain_shared]): per batch
    and model, one forward pass, one plain backward for every NormGrad variant, Grad-CAM, Gradient
    and Input x Gradient, and one guided backward for Guided Backpropagation and Guided Grad-CAM.

    Args:
        model: the classifier; batches are moved to its device.
        explainers: name -> explainer, each built on ``model`` (or on a ``torch.compile``,
            ``DataParallel`` or ``DistributedDataParallel`` wrapper of it); an explainer of
            another model is refused (its maps would be that model's). The centre map
            uses no model.
        data: an iterable of ``(images, labels, regions)`` or ``(images, labels, regions,
            ids)``: images ``(N, C, H, W)``; labels the class to explain per sample (an int
            tensor ``(N,)``), ``None`` for the predicted class, a callable target (e.g. a
            [`SegmentationTarget`][normgrad.SegmentationTarget]), or ``K`` classes per
            sample ``(N, K)`` (multi-label: every (image, class) pair is scored as an
            image of its own, with the regions given per class as
            [`ClassRegions`][normgrad.metrics.ClassRegions] and as id the image's and
            the class's joined by a slash, ``"7/3"``; the rows are over all pairs, and a
            class's score for a method is the mean of that method's records of its pairs;
            an image listing a class twice is refused); regions the objects to
            point at, boolean masks or per-sample boxes as in
            [`metrics.pointing_game`][normgrad.metrics.pointing_game]; ids one id per image (ints or
            strings). Without ids an image's id is its index in the data (for a ``DataLoader`` over
            a [`ShardSampler`][normgrad.ShardSampler], its index in the data set). Images without a
            region are recorded but not counted; images with a region wholly outside the map
            are listed in ``result.outside`` (and warned about). Data without a length
            (an ``IterableDataset``) runs without a total.
        tolerance: Pointing Game radius in pixels (or in ``spacing`` units).
        spacing: pixel size per array dimension, for anisotropic images.
        smoothing_sigma: if given, also score every method after Gaussian smoothing of its
            maps with this standard deviation in pixels (rows named
            ``"<method> (smoothed)"``), as in the paper's Table 2.
        smoothing_kernel_size: number of taps of the smoothing Gaussian (odd).
        reference_rows: add the two rows a method must beat: the centre map
            ([`CenterMap`][normgrad.CenterMap]) and a random point (its exact expected
            hit rate).
        confidence: level of the Wilson intervals.
        progress: print progress (batches, images per second, time left) to stderr, on
            rank 0 only.
        records: a CSV file to write the per-image records to as batches finish. If it
            exists (an interrupted run with the same settings), its images are not
            explained again: the run continues where it stopped. A file written with other
            settings, other explainer arguments or another model (weights, buffers, or a
            submodule's class, settings or attributes) is refused, naming what differs, as
            is a ``DataLoader`` that shuffles when batches have no ids. The data is not
            in the file: an image already recorded keeps its records (its pixels, labels
            and regions are not read again); after changing them, start a new file.
            The file is rewritten atomically on resume. With several processes each rank
            writes its own file, ``<name>.rank<r>-of-<W><suffix>``.
        group: the ``torch.distributed`` process group (default: the default group, when
            one is initialised).
        metrics: more columns beside the Pointing Game, from the same maps (no extra
            pass): ``"energy"`` (the energy-based Pointing Game, mean over the images with
            a region), ``"multi"`` (the multi-object Pointing Game, mean over the images
            with an object) and ``"froc"`` (Object-CXR's FROC of each map's ``froc_k``
            best peaks, at least ``tolerance`` apart, over the whole data set; images
            without objects add false positives). ``"multi"`` and ``"froc"`` need the
            objects one by one: boxes or shapes, not masks.
            ``"deletion"`` and ``"insertion"``: the mean areas under each image's
            deletion and insertion curves
            ([`deletion_insertion`][normgrad.metrics.deletion_insertion] for the class
            explained, with ``deletion_options``). They run the model again, ``2 * steps``
            forward passes per image and method (40 by default).
            ``"iou"``, ``"hit_rate"`` and ``"auprc"``: CheXlocalize's IoU of each map's
            Otsu segmentation with the image's regions as one mask (boxes rasterised),
            its hit rate (the maximum in the mask) and the pixel-level average precision
            ([`iou`][normgrad.metrics.iou], [`hit_rate`][normgrad.metrics.hit_rate],
            [`localization_auprc`][normgrad.metrics.localization_auprc]), each the mean
            over the images scored.
        froc_k: the detections per map for ``"froc"`` (its peaks, as
            [`metrics.froc`][normgrad.metrics.froc]'s ``k``).
        deletion_options: settings of ``"deletion"`` and ``"insertion"``
            ([`DeletionOptions`][normgrad.metrics.DeletionOptions]): ``steps``,
            ``baseline`` (``"zeros"``, ``"blur"``, ``"mean"`` or a tensor) and
            ``batch_size``, e.g. ``{"steps": 10, "baseline": "blur"}``; a key left out keeps
            the metric's default. Only with ``"deletion"`` or ``"insertion"`` in
            ``metrics``. ``steps`` and ``baseline`` are settings of the run (a records file
            or a rank with others is refused; a tensor baseline is compared by its shape,
            dtype and bytes); ``batch_size``, the memory bound, may differ.
        baselines: deprecated name of ``reference_rows`` (removed in the next release).
        peaks: deprecated name of ``froc_k`` (removed in the next release).

    With an initialised process group of several ranks, every rank calls ``evaluate`` on
    its own share of the data (shard with [`ShardSampler`][normgrad.ShardSampler], never with
    ``DistributedSampler``, which repeats images); the records are gathered once at the
    end and every rank returns the result of the whole data set, equal to one process
    over all of it. An image id seen twice is an error. Ranks whose explainers, arguments
    or model weights differ, and a rank that fails, make every rank raise (a rank that fails
    before its data at once; one that fails on a batch when the others finish theirs). An
    interrupt (``KeyboardInterrupt``, ``SystemExit``) counts as a failure: the interrupted
    rank tells the others, then raises it.

    Every argument is checked before the first batch is explained.

    Returns:
        [`EvaluationResult`][normgrad.EvaluationResult]: ``print(result)`` shows a Markdown table;
        ``result.records`` holds every image's point and hit per method.
    """
    reference_rows = _renamed("baselines", baselines, "reference_rows", reference_rows)
    froc_k = _renamed("peaks", peaks, "froc_k", froc_k)
    rank, size = world(group)
    error: BaseException | None = None
    run: Run | None = None
    try:
        run = checked(
            model, explainers, tolerance=tolerance, spacing=spacing,
            smoothing_sigma=smoothing_sigma, smoothing_kernel_size=smoothing_kernel_size,
            reference_rows=reference_rows, confidence=confidence, metrics=metrics,
            froc_k=froc_k, deletion_options=deletion_options,
            compared=records is not None or size > 1,
        )  # fmt: skip
    except BaseException as e:  # an interrupt too: the other ranks must hear of it
        error = e
    call = next_call(group) if size > 1 else 0
    if size > 1:  # before the data: every rank learns of another's bad arguments
        _agree(run, error, call, rank, size, group)
    elif error is not None:
        raise error
    assert run is not None
    source, bar, error = _open(data, records, run, progress, rank, size)
    if size > 1:  # every rank learns of it before spending time on its data
        exchange(None, error, "setup", call, rank, size, group)
    mine: list[Record] = []
    try:
        if source is not None:
            _score_data(model, explainers, source, run, _device(model), bar, mine)
    except BaseException as e:  # an interrupt too: the other ranks must hear of it
        if size == 1:
            raise
        error = e
    finally:
        bar.close()
    if size > 1:
        # the one exchange after the data (never per batch: shards may differ in length)
        shared = exchange(mine, error, "records", call, rank, size, group)
        mine = [r for theirs in shared for r in theirs]
    return _result(mine, run, tolerance, confidence, rank == 0)


def _renamed(old: str, given: Any, new: str, value: Any) -> Any:
    """``value``, or what was ``given`` under the argument's ``old`` name (with a warning)."""
    if given is None:
        return value
    if value != inspect.signature(evaluate).parameters[new].default:  # both given
        raise InvalidArgumentError(
            f"evaluate: got {old}={given!r} and {new}={value!r}; {old} is the deprecated "
            f"name of {new}: pass {new} alone"
        )
    warn_renamed(f"evaluate({old}=...)", f"evaluate({new}=...)")
    return given


def _open(
    data: Iterable[Any],
    records: str | os.PathLike[str] | None,
    run: Run,
    progress: bool,
    rank: int,
    size: int,
) -> tuple[_Source | None, Progress, BaseException | None]:
    """What can fail on one rank before its data (the records file, the data's order):
    the rank's source of batches and its progress bar, or the error (raised at once when
    no other rank must hear of it)."""
    try:
        path = record_path(records, rank, size) if records else None
        log = RecordFile(path, run.settings, run.methods) if path else None
        indices = sampler_indices(data)
        bar = Progress(progress and rank == 0, batches(data))
        source = _Source(data, iter(data), indices, log, size > 1)
    except BaseException as e:  # an interrupt too: the other ranks must hear of it
        if size == 1:
            raise
        return None, Progress(False, None), e
    return source, bar, None


def _result(
    records: list[Record], run: Run, tolerance: float, confidence: float, speaks: bool
) -> EvaluationResult:
    """The result of every rank's ``records``; the rank that ``speaks`` names the images
    with regions outside their map (the batches warned by their positions)."""
    _refuse_duplicates(records, len(run.methods))
    result = result_of(records, run.methods, tolerance, confidence, run.metrics)
    if result.outside and speaks:
        warn(f"evaluate: {outside_note(result.outside, result.not_counted)}")
    return result


def _agree(
    run: Run | None, error: BaseException | None, call: int, rank: int, size: int, group: Any
) -> None:
    """Exchange every rank's settings (or its error) and refuse ranks called otherwise."""
    settings = run.settings if run is not None else None
    shared = exchange(settings, error, "settings", call, rank, size, group)
    for other, theirs in enumerate(shared):
        if theirs != settings:
            assert theirs is not None and settings is not None
            differ = describe_differences(settings, theirs, f"rank {other}")
            raise InvalidArgumentError(
                f"evaluate: rank {other} was called with other {differ} than rank {rank}; "
                "every rank must pass the same explainers and arguments, and a model of "
                "the same modules and weights"
            )


@dataclass(frozen=True)
class _Source:
    """Where a rank's batches come from: the data, its batches, the data set indices they
    read (when known), the records file (when given), whether other ranks share the run."""

    data: Any
    batches: Iterator[Any]
    indices: list[int] | None
    log: RecordFile | None
    shared: bool


def _score_data(
    model: nn.Module,
    explainers: Mapping[str, Explainer],
    source: _Source,
    run: Run,
    device: torch.device,
    bar: Progress,
    out: list[Record],
) -> None:
    """Score every batch of ``source`` into ``out`` (the images its records file holds
    whole keep their records), refusing ids given twice and, with records and no ids,
    data in another order on every run."""
    log, indices = source.log, source.indices
    images = 0
    seen: set[str] = set()  # this rank's ids so far (the ranks' together: at the end)
    for step, batch in enumerate(source.batches, start=1):
        x, labels, batch_regions, ids = unpack(batch)
        n = x.shape[0]
        if ids is None:
            if indices is None and source.shared:
                raise InvalidArgumentError(
                    "data: in an evaluation over several processes every image needs an id "
                    "shared by all ranks: give batches (images, labels, regions, ids), or "
                    "a DataLoader over a normgrad.ShardSampler"
                )
            check_order(source.data, log is not None)
            ids = [str(indices[images + i] if indices else images + i) for i in range(n)]
        images += n
        _refuse_repeats(ids, seen, step)
        check_labels(labels, n, step)
        keys = record_ids(ids, labels, step)  # the (image, class) pairs' for labels (N, K)
        if log is not None:
            log.check_points(keys, x.shape[2:])
        if log is not None and all(i in log.done for i in keys):
            out.extend(r for i in keys for r in log.done[i])
            bar.step(step, images)
            continue
        with labels_named(step):  # a class the model has not: the labels of this batch
            batch_records = score_batch(
                model, explainers, to_device(x, device), labels, batch_regions, ids, run.methods,
                **run.scoring,
            )  # fmt: skip
        if log is not None:  # images the file holds whole keep their records
            batch_records = log.append(batch_records)
        out.extend(batch_records)
        bar.step(step, images)


def _refuse_repeats(ids: list[str], seen: set[str], step: int) -> None:
    """Refuse a batch whose ids repeat one another or an earlier batch's, before it is
    explained (the ids as text: ``1`` and ``"1"`` are one id); add them to ``seen``."""
    repeated: list[str] = []
    for image in ids:
        if image in seen:
            repeated.append(image)
        seen.add(image)
    if repeated:
        twice = sorted(dict.fromkeys(repeated), key=image_order)
        shown = ", ".join(twice[:5]) + (", ..." if len(twice) > 5 else "")
        raise InvalidArgumentError(
            f"data: image(s) {shown} given more than once (batch {step} repeats ids of an "
            "earlier batch or of itself, compared as text: 1 and '1' are one id); each "
            "image must be scored once, with an id of its own (DistributedSampler repeats "
            "images to even out shards: use normgrad.ShardSampler)"
        )


def _refuse_duplicates(records: list[Record], per_image: int) -> None:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.image] = counts.get(r.image, 0) + 1
    twice = sorted((i for i, c in counts.items() if c > per_image), key=image_order)
    if twice:
        shown = ", ".join(twice[:5]) + (", ..." if len(twice) > 5 else "")
        raise InvalidArgumentError(
            f"data: image(s) {shown} given more than once ({len(twice)} in all); each image "
            "must be scored once (DistributedSampler repeats images to even out shards: use "
            "normgrad.ShardSampler)"
        )
