"""What an evaluation reads from its data: batches, labels, ids, their order and count."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import (
    DataLoader,
    RandomSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from .._errors import ArgumentTypeError, InvalidArgumentError, NormGradError, ShapeError, describe
from .._model.targets import ClassTarget, check_class_shape, resolve_target
from ..metrics import Regions


class Progress:
    """Batches, images, images per second and time left, on one line of stderr."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.enabled = enabled
        self.total = total
        self.start = time.perf_counter()

    def step(self, done: int, images: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        line = f"\revaluate: batch {done}"
        if self.total is not None:
            left = elapsed / done * max(self.total - done, 0)
            line += f"/{self.total}"
        line += f", {images} images, {images / elapsed:.1f} images/s"
        if self.total is not None:
            line += f", {left:.0f} s left"
        sys.stderr.write(line + "   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def batches(data: Any) -> int | None:
    """The number of batches ``data`` will give, or ``None`` when it cannot say (a
    ``DataLoader`` of an ``IterableDataset``, a generator): the run goes on without a total."""
    try:
        return len(data)
    except TypeError:  # no __len__, or one that refuses (IterableDataset)
        return None


def unpack(batch: Any) -> tuple[torch.Tensor, Any, Regions, list[str] | None]:
    """A batch's images, labels, regions and ids (``None`` when it has none), as text; an
    id that is not valid text (a lone surrogate, from a file name) is refused."""
    if isinstance(batch, (tuple, list)) and len(batch) in (3, 4):
        x, labels, regions = batch[:3]
        ids = batch[3] if len(batch) == 4 else None
        if not isinstance(x, torch.Tensor):
            raise ArgumentTypeError(f"data: expected images as a tensor, got {describe(x)}")
        if ids is None:
            return x, labels, regions, None
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if len(values) != x.shape[0]:
            raise InvalidArgumentError(
                f"data: expected one id per image ({x.shape[0]}), got {len(values)} ids"
            )
        texts = [str(v) for v in values]
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidArgumentError(
                    f"data: the image id {text!r} is not valid text ({e.reason} at "
                    f"position {e.start}: a lone surrogate), so it cannot be written to a "
                    "records file or a CSV; give ids that encode as UTF-8 (e.g. decode file "
                    "names with errors='replace')"
                ) from None
        return x, labels, regions, texts
    raise InvalidArgumentError(
        "data: expected batches of (images, labels, regions) or (images, labels, regions, ids), "
        f"got {describe(batch)}"
    )


def check_labels(labels: Any, images: int, step: int) -> None:
    """Raise unless a batch's labels are a class to explain per image (or ``None``), naming
    the data's labels, not the ``target`` they become."""
    with labels_named(step):
        resolved = resolve_target(labels)
        if isinstance(resolved, ClassTarget):
            check_class_shape(resolved, images)


@contextlib.contextmanager
def labels_named(step: int) -> Iterator[None]:
    """An error about the ``target`` raised inside (the batch's labels are the explainers'
    target: a wrong shape, or a class the model has not, found in its pass) names the
    labels of batch ``step``."""
    try:
        yield
    except NormGradError as e:
        if not str(e).startswith("target: "):
            raise
        text = str(e).removeprefix("target: ")
        message = (
            f"data: the labels of batch {step} (the second element of each batch): {text}; "
            "labels are the class to explain per image, an int tensor (N,) (labels.long() "
            "converts whole-number floats), or None for the predicted class"
        )
        if isinstance(e, ShapeError):
            raise ShapeError(message, e.actual_shape) from None
        raise type(e)(message) from None


def shuffling(data: Any) -> str | None:
    """The sampler's name when ``data`` is a ``DataLoader`` whose order changes from one
    run to the next (a ``RandomSampler`` and the like), else ``None``."""
    if not isinstance(data, DataLoader):
        return None
    random = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)
    for sampler in (data.sampler, getattr(data.batch_sampler, "sampler", None)):
        if isinstance(sampler, random) or getattr(sampler, "shuffle", False) is True:
            return type(sampler).__name__
    return None


def check_order(data: Any, resuming: bool) -> None:
    """With a records file, refuse batches without ids from data read in another order on
    every run: the records would be matched to other images on a resume."""
    sampler = shuffling(data) if resuming else None
    if sampler is not None:
        raise InvalidArgumentError(
            f"data: a DataLoader whose sampler ({sampler}) shuffles gives the images in "
            "another order on every run, so with records= and no ids a resumed run would "
            "take the records of some images for others; yield ids with each batch "
            "(images, labels, regions, ids), or keep the order fixed (shuffle=False)"
        )


def record_path(path: str | os.PathLike[str], rank: int, size: int) -> Path:
    """The records file of ``rank`` of ``size`` (the path itself for one process)."""
    p = Path(path)
    return p if size == 1 else p.with_name(f"{p.stem}.rank{rank}-of-{size}{p.suffix}")
