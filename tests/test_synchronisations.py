"""Host synchronisations and kernels per call, counted on the CPU with a dispatch mode.

On a GPU the host queues kernels and runs ahead; every point where it must read a value
the device computed (a host synchronisation) drains that queue, and the device idles while
the host issues the rest. The checks of the library (non-finite outputs, constant maps,
classes in range, zero gradients) compute their flags on the device and read them once,
at the end of a call. These tests count, per call, the operations that would synchronise
on CUDA (listed once, in ``tests/dispatch_count.py``, with what the count sees and what
it cannot) and the non-view kernels dispatched, so that a new eager check cannot slip back
in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch

import normgrad
from normgrad._transfer import to_device

from .conftest import requires_cuda
from .dispatch_count import count, cuda_syncs
from .explainers import EXPLAINERS
from .models import TinyCNN


def floor(model: torch.nn.Module, x: torch.Tensor, layers: list[str]) -> None:
    """The minimum a layer method needs: bare hooks, one forward, ``autograd.grad`` to the
    activations (as in the benchmarks)."""
    acts: list[torch.Tensor] = []
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o: acts.append(o)) for n in layers
    ]
    try:
        out = model(x)
        torch.autograd.grad(out[:, 1].sum(), acts)
    finally:
        for h in handles:
            h.remove()


RESNET_MULTI = ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]
RESNET_SINGLE = "layer3.1"


def resnet() -> tuple[torch.nn.Module, torch.Tensor]:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    return model, torch.randn(2, 3, 64, 64)


# the one list of explainers beside the paper's ten (these four are among them)
IN_THE_PAPER = {"normgrad", "input-x-gradient", "guided-backprop", "grad-cam", "guided-grad-cam"}


def explainers(
    model: torch.nn.Module, multi: list[str], single: str
) -> dict[str, normgrad.Explainer]:
    """The paper's ten methods on ``single`` and ``multi``, then every other explainer."""
    made = normgrad.presets.paper_methods(model, normgrad.presets.LayerPreset(single, multi))
    made.update({n: make(model, multi) for n, make in EXPLAINERS.items() if n not in IN_THE_PAPER})
    return made


# At most this many synchronisations per call (see docs/benchmarks.md): one read of every
# check's flags at the end of the call; SmoothGrad and RISE also read their images' seeds (a
# generator's seed is a host integer), Score-CAM how many (image, channel) pairs it runs (the
# channels constant in an image share one zero image).
MAX_SYNCS = {"smoothgrad": 2, "rise": 2, "score-cam": 2}
# Non-view kernels over the floor (hooks + autograd.grad to the same activations) on a
# ResNet-18 at 64 px, four layers or one, conv3x3 (at first: 267, 79 and 75; now 108, 28
# and 26; docs/benchmarks.md says what each is for).
MAX_OVER_FLOOR = {"NormGrad Conv3x3 (M)": 130, "NormGrad Conv3x3": 30, "Grad-CAM": 30}


def _quiet(call: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant maps of the smallest layers
            return call()

    return run


NAMES = list(explainers(TinyCNN(), ["relu1", "relu3"], "relu3"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", ["resnet18", "tiny"])
def test_explainer_reads_the_device_once_per_call(name: str, which: str) -> None:
    model, x, multi, single = _model(which)
    explainer = explainers(model, multi, single)[name]
    counts = count(_quiet(lambda: explainer(x, target=1)))
    assert counts.sync_count <= MAX_SYNCS.get(name, 1), dict(counts.syncs)
    if which == "resnet18" and name in MAX_OVER_FLOOR:
        layers = multi if "(M)" in name else [single]
        over = counts.kernels - count(lambda: floor(model, x, layers)).kernels
        assert over <= MAX_OVER_FLOOR[name], over


@pytest.mark.parametrize("name", NAMES)
def test_k_classes_per_sample_read_the_device_as_one_class(name: str) -> None:
    """A target of K classes per sample (N, K) reads the device as often as one class per
    sample: the methods of one class per pass (Occlusion, RISE) score the K classes from
    the same passes, the others batch or loop their backward passes inside one call."""
    model, x, multi, single = _model("tiny")
    explainer = explainers(model, multi, single)[name]
    target = torch.tensor([[0, 2, 1], [1, 1, 0]])
    counts = count(_quiet(lambda: explainer(x, target=target)))
    assert counts.sync_count <= MAX_SYNCS.get(name, 1), dict(counts.syncs)


@pytest.mark.parametrize("arch", ["convnext_tiny", "swin_t"])
def test_kernels_over_the_floor_are_the_same_on_other_architectures(arch: str) -> None:
    """The preset layers of a ConvNeXt (blocks that permute to channels last and back)
    and a Swin (token grids, channels last) cost what a ResNet's do: the layouts are read
    from views, and the layout tracing's probes are meta tensors (no kernel runs)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    preset = normgrad.presets.layers(arch)
    multi, single = list(preset.multi), preset.single
    for name, explainer in explainers(model, multi, single).items():
        if name in MAX_OVER_FLOOR:
            layers = multi if "(M)" in name else [single]
            counts = count(_quiet(lambda e=explainer: e(x, target=1)))
            over = counts.kernels - count(lambda ls=layers: floor(model, x, ls)).kernels
            assert over <= MAX_OVER_FLOOR[name], (name, over)
            assert counts.sync_count <= 1, dict(counts.syncs)


def _model(which: str) -> tuple[torch.nn.Module, torch.Tensor, list[str], str]:
    if which == "resnet18":
        return (*resnet(), RESNET_MULTI, RESNET_SINGLE)
    torch.manual_seed(0)
    return TinyCNN().eval(), torch.randn(2, 3, 16, 16), ["relu1", "relu2", "relu3"], "relu3"


@pytest.mark.parametrize("which", ["resnet18", "tiny"])
def test_explain_shared_reads_the_device_once(which: str) -> None:
    model, x, multi, single = _model(which)
    made = explainers(model, multi, single)
    methods = list(made.values())
    counts = count(_quiet(lambda: normgrad.explain_shared(methods, x, target=1)))
    # the random methods among them read their images' seeds too
    assert counts.sync_count <= 1 + sum(n - 1 for n in MAX_SYNCS.values()), dict(counts.syncs)
    shared = [e for name, e in made.items() if MAX_SYNCS.get(name, 1) == 1]
    counts = count(_quiet(lambda: normgrad.explain_shared(shared, x, target=1)))
    assert counts.sync_count <= 1, dict(counts.syncs)


def test_evaluate_reads_the_device_twice_per_batch() -> None:
    """The masks copied to the host for the random point (scipy), before the explainers
    run, and one read of every check and every number recorded, at the end."""
    model, x, multi, single = _model("resnet18")
    counts = count(_quiet(_evaluate_call(model, x, multi, single)))
    assert counts.sync_count <= 2, dict(counts.syncs)


def test_evaluate_reads_no_more_for_its_metrics() -> None:
    """Every metric on masks adds its numbers to the batch's one read at the end
    (deletion and insertion run their model passes without reading between them)."""
    model, x, multi, single = _model("tiny")
    call = _evaluate_call(model, x, multi, single, metrics=METRICS_ON_MASKS)
    counts = count(_quiet(call))
    assert counts.sync_count <= 2, dict(counts.syncs)


METRICS_ON_MASKS = ("deletion", "insertion", "energy", "auprc", "iou", "hit_rate")


def test_evaluate_searches_the_peaks_of_every_method_at_once() -> None:
    """FROC and the multi-object game read the device per round of the peaks' search
    (``metrics.peaks``), once for every method's maps: the reads do not grow with the
    methods."""
    model, x, multi, single = _model("tiny")
    boxes = [torch.tensor([[4.0, 4.0, 12.0, 12.0]]), torch.tensor([[1.0, 1.0, 6.0, 5.0]])]
    reads = []
    for names in (["gradient"], ["normgrad", "grad-cam", "gradient", "guided"]):
        call = _evaluate_call(model, x, multi, single, ("froc", "multi"), boxes, names)
        counts = count(_quiet(call))
        reads.append(counts.sync_count)
        assert counts.sync_count <= 8, dict(counts.syncs)
    assert reads[0] == reads[1], reads


# per call; boxes are checked with one read when they are prepared (the padding rows are
# dropped then), and the energy game reads the boxes' windows to slice the maps
MAX_METRIC_SYNCS = {"pointing_game (boxes)": 2, "energy_pointing_game (boxes)": 3}


@pytest.mark.parametrize(
    "name",
    [
        "pointing_game (masks)", "pointing_game (boxes)", "energy_pointing_game (masks)",
        "energy_pointing_game (boxes)", "PointingGame.update (masks)",
        "pointing_distances (masks)", "pointing_game_curve (masks)",
        "pointing_game_curve (distances)",
    ],
)  # fmt: skip
def test_metric_reads_the_device_once_per_call(name: str) -> None:
    counts = count(_quiet(_metric_calls()[name]))
    assert counts.sync_count <= MAX_METRIC_SYNCS.get(name, 1), dict(counts.syncs)


def test_counter_sees_every_kind_of_host_read() -> None:
    """The counter is not blind: each listed way of reading the device is counted."""
    t = torch.randn(6)  # made before the call: on the device
    ones = torch.ones(6, dtype=torch.long)
    reads: list[Callable[[], object]] = [
        lambda: t.sum().item(), lambda: bool(t.sum() > 0), lambda: float(t[0]),
        lambda: int(t.argmax()), lambda: t.nonzero(), lambda: t[t > 0], lambda: t.tolist(),
        lambda: t.numpy(), lambda: torch.equal(t, t), lambda: t.unique(),
        lambda: t.masked_select(t > 0), lambda: t.repeat_interleave(ones),
    ]  # fmt: skip
    for read in reads:
        assert count(read).sync_count >= 1
    assert count(lambda: t.repeat_interleave(ones, output_size=6)).sync_count == 0
    assert count(lambda: (t.abs() + 1).amax()).sync_count == 0


def test_counter_sees_every_blocking_copy_to_the_device() -> None:
    """A copy of host data to the device waits for the device unless it is non-blocking;
    reading what was made on the host waits for nothing."""
    t = torch.randn(6)  # made before the call: on the device
    copies: list[Callable[[], object]] = [
        lambda: torch.tensor([1.0, 2.0], device=t.device),
        lambda: torch.as_tensor([1.0, 2.0], device=t.device),
        lambda: torch.tensor([1.0]).to(t.device), lambda: torch.tensor([1.0]).to(t),
        lambda: torch.arange(3).mul(2).to(device=t.device),
        lambda: t.new_tensor([1.0, 2.0]), lambda: t.clone().copy_(torch.ones(6)),
        lambda: t[torch.tensor([0, 2])], lambda: t.clone().index_put_((torch.arange(2),), t[0]),
        lambda: t.clone().__setitem__(slice(0, 2), torch.tensor([1.0, 2.0])),
        lambda: torch.tensor([1.0]).to(torch.device(t.device)),
    ]  # fmt: skip
    for copy in copies:
        assert dict(count(copy).syncs) == {"to_device": 1}
    # what a copy made on the device holds is read as any device tensor is
    assert count(lambda: to_device([1.0, 2.0], t.device).sum().item()).sync_count == 1
    assert count(lambda: t.to("cpu")).sync_count == 1  # a copy to the host
    free: list[Callable[[], object]] = [
        lambda: torch.tensor([1.0]).to(t.device, non_blocking=True),
        lambda: to_device([1.0, 2.0], t.device),
        lambda: to_device(torch.arange(3), t.device, torch.float64),
        lambda: torch.zeros(3, device=t.device), lambda: torch.as_tensor(t, device=t.device),
        lambda: torch.tensor([1.0, 2.0]).tolist(), lambda: torch.arange(4).sum().item(),
        lambda: torch.zeros(2, device=torch.ones(1).device).tolist(),
        lambda: torch.tensor([3.0], device="cpu").item(),
        lambda: torch.ones(2).to(torch.device("cpu")).tolist(),
        lambda: torch.ones(2).to(t.device, torch.float64, True),
        lambda: t + torch.tensor(2.0), lambda: torch.where(t > 0, torch.tensor(1.0), t),
    ]  # fmt: skip
    for call in free:
        assert count(call).sync_count == 0


def test_errors_are_raised_as_before_at_the_end_of_the_call() -> None:
    """A check read at the end still raises its error, and the model is left as it was."""
    model, x, multi, single = _model("tiny")
    with pytest.raises(normgrad.InvalidArgumentError, match="class indices in"):
        normgrad.NormGrad(model, multi)(x, target=7)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(normgrad.InvalidArgumentError, match="expected finite values"):
        normgrad.GradCAM(model, single)(bad)
    assert not model.training or all(not m.training for m in model.modules())


def _table(model: torch.nn.Module, x: torch.Tensor, multi: list[str], single: str) -> None:
    base_multi = count(lambda: floor(model, x, multi)).kernels
    base_single = count(lambda: floor(model, x, [single])).kernels
    print(f"floor multi {base_multi} kernels, floor single {base_single} kernels")
    for name, explainer in explainers(model, multi, single).items():
        c = count(lambda e=explainer: e(x, target=1))
        base = base_multi if "(M)" in name else base_single
        print(
            f"{name:28s} syncs {c.sync_count:3d} {dict(c.syncs)} kernels {c.kernels} "
            f"(+{c.kernels - base})"
        )
    shared = list(explainers(model, multi, single).values())[:11]
    c = count(lambda: normgrad.explain_shared(shared, x, target=1))
    print(
        f"explain_shared (11)          syncs {c.sync_count:3d} {dict(c.syncs)} kernels {c.kernels}"
    )


def _metric_calls() -> dict[str, Callable[[], object]]:
    from normgrad import metrics

    torch.manual_seed(0)
    maps = torch.rand(4, 1, 32, 32)
    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:, 8:16, 8:20] = True
    masks[3] = False
    boxes = [torch.tensor([[4.0, 4.0, 12.0, 10.0]]) for _ in range(3)] + [torch.zeros(0, 4)]
    game = metrics.PointingGame(tolerance=3)
    distances = torch.tensor([0.0, 2.5, math.inf, math.nan], dtype=torch.float64)
    return {
        "pointing_game (masks)": lambda: metrics.pointing_game(maps, masks, tolerance=3),
        "pointing_game (boxes)": lambda: metrics.pointing_game(maps, boxes, tolerance=3),
        "energy_pointing_game (masks)": lambda: metrics.energy_pointing_game(maps, masks),
        "energy_pointing_game (boxes)": lambda: metrics.energy_pointing_game(maps, boxes),
        "PointingGame.update (masks)": lambda: game.update(maps, masks),
        "pointing_distances (masks)": lambda: metrics.pointing_distances(maps, masks),
        "pointing_game_curve (masks)": lambda: metrics.pointing_game_curve(
            maps, masks, max_tolerance=8
        ),
        "pointing_game_curve (distances)": lambda: metrics.pointing_game_curve(
            distances, max_tolerance=8
        ),
        "peaks": lambda: metrics.peaks(maps, 5, min_distance=3),
        "froc (boxes)": lambda: metrics.froc(maps, boxes, k=5, min_distance=3),
    }


def _metrics_table() -> None:
    for name, call in _metric_calls().items():
        c = count(call)
        print(f"{name:28s} syncs {c.sync_count:3d} {dict(c.syncs)} kernels {c.kernels}")


def _evaluate_call(
    model: torch.nn.Module,
    x: torch.Tensor,
    multi: list[str],
    single: str,
    metrics: tuple[str, ...] = (),
    regions: object = None,
    names: list[str] | None = None,
) -> Callable[[], object]:
    """One batch of ``evaluate`` (the regions: masks of one square unless given)."""
    if regions is None:
        masks = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool)
        masks[:, 4:12, 4:12] = True
        regions = masks
    methods = {
        "normgrad": normgrad.NormGrad(model, multi, "conv3x3"),
        "grad-cam": normgrad.GradCAM(model, single),
        "gradient": normgrad.Gradient(model),
        "guided": normgrad.GuidedBackprop(model),
    }
    chosen = {n: methods[n] for n in names or methods}
    data = [(x, torch.tensor([1] * x.shape[0]), regions)]
    return lambda: normgrad.evaluate(
        model,
        chosen,
        data,
        tolerance=3,
        progress=False,
        metrics=metrics,
        froc_k=3,
    )


if __name__ == "__main__":
    _metrics_table()
    c = count(_evaluate_call(*resnet(), RESNET_MULTI, RESNET_SINGLE))
    print("evaluate one batch", dict(c.syncs), c.kernels)
    _table(*resnet(), RESNET_MULTI, RESNET_SINGLE)
    torch.manual_seed(0)
    _table(TinyCNN().eval(), torch.randn(2, 3, 16, 16), ["relu1", "relu2", "relu3"], "relu3")


@requires_cuda
def test_cuda_reports_the_synchronisations_counted_on_the_cpu() -> None:
    """On a CUDA device, with targets and regions made on the host (as a data loader gives
    them), the synchronisations CUDA reports are those counted here: copies included."""
    from normgrad import metrics

    model, x = resnet()
    model, x = model.cuda(), x.cuda()
    target = torch.tensor([[1, 2], [0, 2]])  # on the host
    for name, explainer in explainers(model, RESNET_MULTI, RESNET_SINGLE).items():
        calls = {"int": lambda e=explainer: e(x, target=1), "(N, K)": lambda e=explainer: e(x, target=target)}  # fmt: skip
        for kind, call in calls.items():
            assert cuda_syncs(call) <= MAX_SYNCS.get(name, 1), (name, kind)
    maps = torch.rand(2, 1, 32, 32, device="cuda")
    shapes = [[metrics.Box(4, 4, 12, 10), metrics.Ellipse(18, 18, 28, 28)], []]
    boxes = [torch.tensor([[4.0, 4.0, 12.0, 10.0]]), torch.zeros(0, 4)]
    assert cuda_syncs(lambda: metrics.pointing_game(maps, shapes, tolerance=3)) <= 1
    assert cuda_syncs(lambda: metrics.pointing_game(maps, boxes, tolerance=3)) <= 1
    assert cuda_syncs(lambda: metrics.froc(maps, boxes, k=5, min_distance=3)) <= 4
    call = _evaluate_call(model, x.cpu(), RESNET_MULTI, RESNET_SINGLE)  # a host batch
    assert cuda_syncs(call) <= 2
