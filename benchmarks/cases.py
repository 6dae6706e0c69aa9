"""The benchmark cases: models and inputs, the references they are measured against, and
the environment they ran in."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from harness import measure_group, summary

import normgrad
from normgrad import functional as nf
from normgrad import metrics

ROOT = Path(__file__).resolve().parent.parent
MULTI = normgrad.presets.layers("resnet50").multi
SINGLE = normgrad.presets.layers("resnet50").single
LOOP_ROUNDS = 3


# ---------------------------------------------------------------------------------------
# models, inputs and references


def model_and_input(
    size: int, batch: int, device: torch.device
) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=2).eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    return model, x


def floor(model: torch.nn.Module, x: torch.Tensor, layers: list[str]) -> list[torch.Tensor]:
    """The minimum: bare forward hooks, one forward, ``autograd.grad`` to the activations."""
    acts: list[torch.Tensor] = []
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o: acts.append(o)) for n in layers
    ]
    try:
        out = model(x)
        grads = torch.autograd.grad(out[:, 1].sum(), acts)
    finally:
        for h in handles:
            h.remove()
    return list(grads)


def forward_backward(model: torch.nn.Module, x: torch.Tensor) -> None:
    out = model(x)
    out[:, 1].sum().backward()
    model.zero_grad(set_to_none=True)


def kernel_inputs(size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation of ``layer2.0`` (detached) and the gradient of the score to it."""
    model, x = model_and_input(size, batch, device)
    (grad,) = floor(model, x, ["layer2.0"])
    acts: list[torch.Tensor] = []
    h = model.layer2[0].register_forward_hook(lambda m, i, o: acts.append(o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    return acts[0], grad


def unfold_conv_map(activation: torch.Tensor, gradient: torch.Tensor, k: int) -> torch.Tensor:
    """The literal conv K x K NormGrad map through the unfolded (K^2 C, H W) tensor."""
    n, _, h, w = activation.shape
    patches = F.unfold(activation, kernel_size=k, padding=k // 2)
    return gradient.norm(dim=1, keepdim=True) * patches.norm(dim=1).view(n, 1, h, w)


def loop_pointing_game(
    saliency: torch.Tensor, boxes: list[torch.Tensor], tolerance: float
) -> list[float]:
    """Per-sample Pointing Game in the style of TorchRay's benchmark.

    For each image: the argmax of its map, a boolean mask of its boxes, and an acceptance
    disk built from a meshgrid of squared distances; a hit if they overlap.
    """
    results = []
    h, w = saliency.shape[-2:]
    for smap, sample_boxes in zip(saliency, boxes):
        mask = torch.zeros(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in sample_boxes.tolist():
            mask[max(0, y0) : max(0, min(h, y1 + 1)), max(0, x0) : max(0, min(w, x1 + 1))] = True
        if not bool(mask.any()):
            results.append(float("nan"))
            continue
        y, x = divmod(int(smap.reshape(-1).argmax()), w)
        v, u = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32) - y) ** 2,
            (torch.arange(w, dtype=torch.float32) - x) ** 2,
            indexing="ij",
        )
        accept = (v + u) < tolerance**2
        results.append(1.0 if bool((mask & accept).any()) else 0.0)
    return results


# ---------------------------------------------------------------------------------------
# the benchmarks


def _pytorch_grad_cam(
    model: torch.nn.Module, batch: int
) -> tuple[Callable[[torch.Tensor], Any], Callable[[], None]] | None:
    try:
        from pytorch_grad_cam import GradCAM as PGCGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    cam = PGCGradCAM(model=model, target_layers=[model.layer4[2]])
    targets = [ClassifierOutputTarget(1)] * batch
    return (lambda x: cam(input_tensor=x, targets=targets)), cam.activations_and_grads.release


def multi_layer_cases(multi: normgrad.NormGrad, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Multi-layer NormGrad beside its model's forward, the forward plus a full backward,
    and the floor (bare hooks, ``autograd.grad`` to the same layers' activations)."""
    model = multi.model
    return {
        "forward": lambda: model(x),
        "forward+backward": lambda: forward_backward(model, x),
        "floor multi (hooks + autograd.grad)": lambda: floor(model, x, multi.layer_names),
        "NormGrad multi conv3x3": lambda: multi(x, 1),
    }


def bench_passes(
    size: int, batch: int, device: torch.device, t: float, rounds: int, peers: bool
) -> dict[str, Any]:
    model, x = model_and_input(size, batch, device)
    res: dict[str, Any] = {"size": size, "batch": batch}
    multi = normgrad.NormGrad(model, MULTI, "conv3x3")
    fns = multi_layer_cases(multi, x)
    if x.ndim == 4:
        # the same explainer on the same values stored channels-last (NHWC); the model is
        # untouched, convolutions follow the input's layout
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        fns["NormGrad multi conv3x3, channels_last input"] = lambda: multi(x_nhwc, 1)
    if peers:
        single = normgrad.NormGrad(model, SINGLE, "conv3x3")
        gradcam = normgrad.GradCAM(model, SINGLE)
        fns["floor single (hooks + autograd.grad)"] = lambda: floor(model, x, [SINGLE])
        fns["NormGrad single conv3x3"] = lambda: single(x, 1)
        fns["normgrad GradCAM"] = lambda: gradcam(x, 1)
        try:
            import captum.attr as ca

            lgc = ca.LayerGradCam(model, model.layer4[2])
            fns["Captum LayerGradCam"] = lambda: lgc.attribute(x, target=1)
        except ImportError:
            pass
    res.update(measure_group(fns, device, t, rounds))
    if peers:
        pgc = _pytorch_grad_cam(model, batch)
        if pgc is not None:
            # pytorch-grad-cam keeps hooks on the model for its lifetime: it gets a group of
            # its own, beside normgrad's single-layer methods, and its hooks are released.
            call, release = pgc
            try:
                timed = measure_group(
                    {
                        "pytorch-grad-cam GradCAM": lambda: call(x),
                        "NormGrad single conv3x3 (beside pytorch-grad-cam)": lambda: single(x, 1),
                        "normgrad GradCAM (beside pytorch-grad-cam)": lambda: gradcam(x, 1),
                    },
                    device,
                    t,
                    rounds,
                )
            finally:
                release()
            res.update(timed)
        variants = {
            f"{vil} {'M' if multi_layer else 'single'}": normgrad.NormGrad(
                model, MULTI if multi_layer else SINGLE, vil
            )
            for vil in ("scaling", "conv1x1", "conv3x3")
            for multi_layer in (False, True)
        }
        group = {name: (lambda v=v: v(x, 1)) for name, v in variants.items()}
        group["six variants shared"] = lambda: normgrad.explain_shared(
            list(variants.values()), x, 1
        )
        timed = measure_group(group, device, t, rounds)
        res["six variants shared"] = timed.pop("six variants shared")
        res["variants alone"] = timed
    return res


VIT_MULTI = [f"encoder.layers.encoder_layer_{k}" for k in (2, 5, 8)] + [
    "encoder.layers.encoder_layer_11.ln_1"
]


def bench_transformer(
    size: int, batch: int, device: torch.device, t: float, rounds: int
) -> dict[str, Any]:
    """Multi-layer NormGrad on ViT-B/16 (tokens read as a patch grid) against its floor."""
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(num_classes=2, image_size=size).eval().to(device)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts it at zero
    x = torch.randn(batch, 3, size, size, device=device)
    res: dict[str, Any] = {"model": "vit_b_16", "size": size, "batch": batch}
    multi = normgrad.NormGrad(model, VIT_MULTI, "conv3x3")
    res.update(measure_group(multi_layer_cases(multi, x), device, t, rounds))
    return res


def paper_methods(model: torch.nn.Module) -> dict[str, normgrad.Explainer]:
    """The paper's ten methods on the ResNet-50 layers of the paper."""
    return normgrad.presets.paper_methods(model, normgrad.presets.layers("resnet50"))


def bench_protocol(
    size: int, batch: int, device: torch.device, t: float, rounds: int
) -> dict[str, Any]:
    """One batch of the paper's protocol (ten methods, smoothed rows, both baselines) through
    ``evaluate``, beside one multi-layer NormGrad call and the ten methods called alone."""
    model, x = model_and_input(size, batch, device)
    box = torch.tensor([[size // 4, size // 4, size // 2, size // 2]], device=device)
    data = [(x, None, [box] * batch)]
    methods = paper_methods(model)
    multi = normgrad.NormGrad(model, MULTI, "conv3x3")

    def alone() -> None:
        for explainer in methods.values():
            metrics.smooth(explainer(x), 2.0)

    res: dict[str, Any] = {"size": size, "batch": batch, "methods": len(methods)}
    res.update(
        measure_group(
            {
                "NormGrad multi conv3x3": lambda: multi(x),
                "protocol batch (evaluate, shared passes)": lambda: normgrad.evaluate(
                    model, methods, data, smoothing_sigma=2.0, progress=False
                ),
                "ten methods called alone, smoothed": alone,
            },
            device,
            t,
            rounds,
        )
    )
    return res


def bench_kernel(
    size: int, batch: int, device: torch.device, t: float, rounds: int
) -> dict[str, Any]:
    act, grad = kernel_inputs(size, batch, device)
    ours = nf.normgrad_map(act, grad, "conv3x3")
    literal = unfold_conv_map(act, grad, 3)
    timed = measure_group(
        {
            "normgrad kernel": lambda: nf.normgrad_map(act, grad, "conv3x3"),
            "unfold reference": lambda: unfold_conv_map(act, grad, 3),
        },
        device,
        t,
        rounds,
    )
    relative = float(((ours - literal).abs().max() / literal.abs().max()).item())
    return {"shape": list(act.shape), "max relative difference": relative, **timed}


def bench_pointing_game(
    n: int, size: int, device: torch.device, t: float, rounds: int
) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    saliency = torch.rand(n, 1, size, size, generator=gen)
    boxes = []
    for _ in range(n):
        k = int(torch.randint(0, 4, (1,), generator=gen))
        xy = torch.randint(-20, size, (k, 2), generator=gen)
        wh = torch.randint(0, 80, (k, 2), generator=gen)
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    sal_dev = saliency.to(device)
    boxes_dev = [b.to(device) for b in boxes]
    ours = metrics.pointing_game(sal_dev, boxes_dev, 15).cpu()
    loop_times = []
    for _ in range(LOOP_ROUNDS):
        start = time.perf_counter()
        looped = loop_pointing_game(saliency, boxes, 15)
        loop_times.append(time.perf_counter() - start)
    identical = bool(
        torch.equal(
            torch.nan_to_num(ours, nan=-1),
            torch.nan_to_num(torch.tensor(looped, dtype=torch.float32), nan=-1),
        )
    )
    return {
        "maps": n,
        "size": size,
        "identical results": identical,
        **measure_group(
            {
                "normgrad pointing_game": lambda: metrics.pointing_game(sal_dev, boxes_dev, 15),
                # any exact Pointing Game reads every value of every map once: the sum of
                # the maps is that read and nothing more (the memory-bandwidth bound)
                "one read of the maps (sum)": lambda: sal_dev.sum(),
            },
            device,
            t,
            rounds,
        ),
        "per-sample loop": summary(loop_times),
    }


def environment(device: torch.device) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    info: dict[str, Any] = {
        "normgrad": normgrad.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "commit": commit + ("-dirty" if dirty else ""),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for peer in ("captum", "pytorch_grad_cam"):
        try:
            module = __import__(peer)
            info[peer] = getattr(module, "__version__", "installed")
        except ImportError:
            info[peer] = "not installed"
    return info
