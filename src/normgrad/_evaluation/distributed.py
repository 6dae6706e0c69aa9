"""Evaluation over processes (torch.distributed): sharding without duplicates, one gather.

Every rank scores the images its data gives it; at the end the ranks exchange their
records once (``all_gather_object``) and each computes the table of the whole data set.
Before the data they exchange their settings, then whether each opened its records file
and data. A rank that fails joins the next exchange with its error, so every rank raises
instead of waiting for it; each exchange names the ``evaluate`` call and the step it
belongs to, so the exchanges of two calls never pair up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .._errors import ArgumentTypeError, InvalidArgumentError, NormGradError, describe


class DistributedEvaluationError(NormGradError, RuntimeError):
    """Another rank of the process group failed; its error is in the message."""


def world(group: Any = None) -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def gather(value: Any, size: int, group: Any = None) -> list[Any]:
    """``value`` of every rank, in rank order (one collective call)."""
    if size == 1:
        return [value]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, value, group=group)
    return out


_CALLS: dict[Any, int] = {}
"""The ``evaluate`` calls each process group has started in this process."""


def next_call(group: Any = None) -> int:
    """Number this process's next ``evaluate`` call on ``group`` (1, 2, ...): every rank
    counts its calls, and the exchanges check that the ranks are in the same one."""
    key = group if group is not None else dist.group.WORLD  # a new default group: 1 again
    _CALLS[key] = _CALLS.get(key, 0) + 1
    return _CALLS[key]


def failure(error: BaseException | None) -> str | None:
    """An error as the text the other ranks raise with: its type and message."""
    return None if error is None else f"{type(error).__name__}: {error}"


def exchange(
    value: Any,
    error: BaseException | None,
    stage: str,
    call: int,
    rank: int,
    size: int,
    group: Any = None,
) -> list[Any]:
    """Every rank's ``value`` (one collective), after checking that every rank is at the same
    ``stage`` of the same ``evaluate`` call and that none failed: a rank that failed raises
    its error, the others a [`DistributedEvaluationError`][normgrad.DistributedEvaluationError]
    with it. Every point where a rank can fail is followed by an exchange, so a failure
    never leaves the other ranks waiting in a collective the failed rank will not join."""
    mine = {"call": call, "stage": stage, "value": value, "error": failure(error)}
    shared = gather(mine, size, group)
    for other, theirs in enumerate(shared):
        if not isinstance(theirs, dict) or (theirs.get("call"), theirs.get("stage")) != (
            call,
            stage,
        ):
            where = (
                f"call {theirs.get('call')} of evaluate, at its {theirs.get('stage')} exchange"
                if isinstance(theirs, dict)
                else f"another collective ({describe(theirs)})"
            )
            raise DistributedEvaluationError(
                f"evaluate: rank {other} is at {where}, rank {rank} at call {call}, at its "
                f"{stage} exchange: the ranks' collectives no longer pair up (a rank ran "
                "another collective, or called evaluate once more or less than the others); "
                "call evaluate the same number of times on every rank"
            )
    raise_first_error([theirs["error"] for theirs in shared], rank, error)
    return [theirs["value"] for theirs in shared]


def raise_first_error(errors: list[str | None], rank: int, local: BaseException | None) -> None:
    """Raise on every rank when any rank failed: the local error where it happened."""
    if local is not None:
        raise local
    for other, error in enumerate(errors):
        if error is not None:
            raise DistributedEvaluationError(
                f"evaluate: rank {other} failed, so rank {rank} stops too: {error}"
            )


class ShardSampler(Sampler[int]):
    """The indices of one rank's share of a data set, without padding or duplicates.

    Rank ``r`` of ``W`` gets indices ``r, r + W, r + 2W, ...``: the shards differ in length
    by at most one and together hold every index exactly once. PyTorch's
    ``DistributedSampler`` instead repeats indices so that all shards have one length (and
    its ``drop_last=True`` drops images): an evaluation would count the repeated images
    twice. [`evaluate`][normgrad.evaluate] uses the sampler's indices as the images' ids.

    Args:
        data: the data set (anything with ``len``) or its length.
        num_replicas: the number of ranks (default: the process group's world size).
        rank: this rank (default: the process group's rank).

    Examples:
        >>> from normgrad import ShardSampler
        >>> [list(ShardSampler(10, num_replicas=3, rank=r)) for r in range(3)]
        [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    """

    def __init__(
        self, data: Sized | int, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        if isinstance(data, (bool, str, bytes)) or not isinstance(data, (int, Sized)):
            raise ArgumentTypeError(
                f"data: expected a data set or its length, got {describe(data)}"
            )
        self.length = data if isinstance(data, int) else len(data)
        if self.length < 0:
            raise InvalidArgumentError(f"data: expected a length >= 0, got {self.length}")
        here, size = world()
        self.num_replicas = size if num_replicas is None else num_replicas
        self.rank = here if rank is None else rank
        for name, value in (("num_replicas", self.num_replicas), ("rank", self.rank)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentTypeError(f"{name}: expected an int, got {describe(value)}")
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise InvalidArgumentError(
                f"rank: expected 0 <= rank < num_replicas, got rank={self.rank}, "
                f"num_replicas={self.num_replicas}"
            )

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


def sampler_indices(data: Any) -> list[int] | None:
    """The data set indices a ``DataLoader`` reads, in order, when its sampler is a
    [`ShardSampler`][normgrad.ShardSampler] or sequential (``None`` otherwise)."""
    sampler = getattr(data, "sampler", None)
    batches = getattr(data, "batch_sampler", None)
    if not isinstance(data, torch.utils.data.DataLoader) or not (
        isinstance(batches, torch.utils.data.BatchSampler) and batches.sampler is sampler
    ):
        return None
    if isinstance(sampler, (ShardSampler, torch.utils.data.SequentialSampler)):
        return list(iter(sampler))
    return None
