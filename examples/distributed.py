"""The Pointing Game protocol spread over processes and GPUs with torch.distributed.

Every process (rank) explains and scores its own share of the data; ``normgrad.evaluate``
gathers the per-image records once at the end, and every rank gets the table of the whole
data set, equal to one process over all of it.

On the CPU, two processes (gloo):

    torchrun --nproc_per_node=2 examples/distributed.py

On N GPUs of one machine (nccl, one GPU per process):

    torchrun --nproc_per_node=N examples/distributed.py

Without torchrun it runs in one process. The model has random weights (nothing is
downloaded): the example shows the mechanics, not a trained model's maps. The table goes to
stdout (rank 0), the per-image records of all ranks to ``<out>/records.csv``; with
``--resume`` each rank also writes its records as batches finish
(``<out>/progress.rank<r>-of-<W>.csv``), so a run stopped with Ctrl-C and started again
with the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torchvision
from torch.utils.data import DataLoader

import normgrad

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_cxr import SyntheticCXR


def setup() -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (if any); this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    rank = dist.get_rank() if world > 1 else 0
    return rank, world, device


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("outputs/distributed"))
    parser.add_argument("--resume", action="store_true", help="write records as batches finish")
    args = parser.parse_args()

    rank, world, device = setup()
    torch.manual_seed(0)  # the same weights on every rank
    model = torchvision.models.resnet18(num_classes=2).to(device)
    explainers: dict[str, normgrad.Explainer] = {
        "NormGrad conv3x3": normgrad.NormGrad(model, "layer4.1", "conv3x3"),
        "NormGrad conv1x1 M": normgrad.NormGrad(
            model, ["layer2.0", "layer3.0", "layer4.0", "layer4.1"], "conv1x1"
        ),
        "Grad-CAM": normgrad.GradCAM(model, "layer4.1"),
        "Guided Backprop": normgrad.GuidedBackprop(model),
    }
    data = SyntheticCXR(args.images, size=args.size, seed=0)
    # each rank reads its own images, each image on exactly one rank (no padding)
    loader = DataLoader(
        data,
        batch_size=args.batch,
        sampler=normgrad.ShardSampler(data),
        collate_fn=normgrad.metrics.collate,
    )
    start = time.perf_counter()
    result = normgrad.evaluate(
        model,
        explainers,
        loader,
        tolerance=args.size / 16,
        smoothing_sigma=1.0,
        records=args.out / "progress.csv" if args.resume else None,
    )
    if rank == 0:
        print(f"{len(data)} images on {world} process(es), {time.perf_counter() - start:.1f} s")
        print(result)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "records.csv").write_text(result.records_to_csv())
        (args.out / "table.csv").write_text(result.to_csv())
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
