"""Several classes per sample at once: a target (N, K) equals K separate calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import normgrad
from normgrad import metrics
from normgrad._model import per_class
from tests.conftest import examples, requires_cuda
from tests.explainers import EXPLAINERS
from tests.models import TinyCNN, TinyCNN3d, seeded
from tests.reference.pointing import reference_box_mask, reference_pointing_game

Build = Callable[[], tuple[nn.Module, list[str], tuple[int, ...], int]]

ARCHITECTURES: dict[str, Build] = {
    "tiny-cnn": lambda: (seeded(TinyCNN(num_classes=5)), ["relu2", "relu3"], (3, 12, 12), 5),
    "resnet18": lambda: (
        seeded(torchvision.models.resnet18(num_classes=6)),
        ["layer3.1", "layer4.1"],
        (3, 64, 64),
        6,
    ),
    "cnn-3d": lambda: (seeded(TinyCNN3d(num_classes=4)), ["relu1", "relu2"], (2, 6, 6, 6), 4),
}

FACTORIES = {
    **EXPLAINERS,
    "normgrad-multi": lambda m, layers: normgrad.NormGrad(m, layers, "conv1x1"),
}


def _fields(e: normgrad.Explanation) -> dict[str, Any]:
    return {
        "saliency": e.saliency,
        "raw": e.raw,
        "classes": e.classes,
        "attribution": e.attribution,
        **{f"layer_maps[{k}]": v for k, v in e.layer_maps.items()},
        **{f"raw_layer_maps[{k}]": v for k, v in e.raw_layer_maps.items()},
    }


def _assert_per_class(
    together: normgrad.Explanation, separate: list[normgrad.Explanation], n: int
) -> None:
    """Class ``k``'s slice of ``together`` equals the explanation of class ``k`` alone."""
    fields = _fields(together)
    for k, alone in enumerate(separate):
        expected = _fields(alone)
        assert fields.keys() == expected.keys()
        for name, value in fields.items():
            if value is None:
                assert expected[name] is None, name
                continue
            assert value.shape[:2] == (n, len(separate)), name
            want = expected[name]
            if name not in ("classes", "attribution"):
                want = want.squeeze(1)  # the channel axis of one, replaced by the classes
            assert torch.allclose(value[:, k], want, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_k_classes_equal_k_separate_calls(arch: str, method: str) -> None:
    model, layers, shape, classes = ARCHITECTURES[arch]()
    model = model.double()
    explainer = FACTORIES[method](model, layers)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.tensor([[0, classes - 1, 1], [2, 0, 2]])
    together = explainer.explain(x, target)
    assert together.saliency.shape == (2, 3, *shape[1:])
    separate = [explainer.explain(x, target[:, k]) for k in range(3)]
    _assert_per_class(together, separate, 2)


@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 3),
    k=st.integers(1, 4),
    method=st.sampled_from(sorted(FACTORIES)),
)
@examples(8)
def test_random_targets_equal_separate_calls(seed: int, n: int, k: int, method: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    model = seeded(TinyCNN(num_classes=5), seed).double()
    explainer = FACTORIES[method](model, ["relu2", "relu3"])
    x = torch.randn(n, 3, 10, 10, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 5, (n, k), generator=gen)
    together = explainer.explain(x, target)
    _assert_per_class(together, [explainer.explain(x, target[:, j]) for j in range(k)], n)


def test_explain_shared_takes_k_classes() -> None:
    model = seeded(TinyCNN(num_classes=5)).double()
    methods = [FACTORIES[m](model, ["relu2", "relu3"]) for m in sorted(FACTORIES)]
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.tensor([[4, 1], [0, 3]])
    for method, shared in zip(methods, normgrad.explain_shared(methods, x, target)):
        separate = [method.explain(x, target[:, k]) for k in range(2)]
        _assert_per_class(shared, separate, 2)


@pytest.mark.parametrize("batched", [True, False])
def test_one_forward_pass_and_batched_backward(
    monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    """One forward pass; the classes' backward passes batched into one where
    ``batches_backward`` says so (accelerators), one per class otherwise (the CPU)."""
    model = seeded(TinyCNN(num_classes=5)).double()
    if batched:
        monkeypatch.setattr(per_class, "batches_backward", lambda device: True)
    calls: list[bool] = []
    grad = torch.autograd.grad

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(bool(kwargs.get("is_grads_batched")))
        return grad(*args, **kwargs)

    forwards: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: forwards.append(1))
    monkeypatch.setattr(torch.autograd, "grad", counting)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([[0, 1, 2], [3, 4, 0]])
    normgrad.explain_shared(
        [normgrad.NormGrad(model, "relu3"), normgrad.GuidedGradCAM(model, "relu3")], x, target
    )
    handle.remove()
    assert len(forwards) == 1
    # the plain backward, the guided one: each batched, or each a loop over the 3 classes
    assert calls == ([True, True] if batched else [False] * 6)


def test_the_cpu_loops_over_the_classes() -> None:
    assert not per_class.batches_backward(torch.device("cpu"))
    assert per_class.batches_backward(torch.device("cuda"))


def test_loop_over_classes_where_the_backward_cannot_be_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = seeded(TinyCNN(num_classes=5)).double()
    methods = [FACTORIES[m](model, ["relu2", "relu3"]) for m in ("normgrad", "guided-grad-cam")]
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([[0, 1, 2], [3, 4, 0]])
    monkeypatch.setattr(per_class, "batches_backward", lambda device: True)
    batched = normgrad.explain_shared(methods, x, target)
    grad = torch.autograd.grad

    def unbatched(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("vmap: no batching rule for this operator")
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", unbatched)
    looped = normgrad.explain_shared(methods, x, target)
    for a, b in zip(batched, looped):
        for name, value in _fields(a).items():
            if value is not None:
                torch.testing.assert_close(value, _fields(b)[name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: normgrad.GradCAM(m, "relu3"),
        lambda m: normgrad.Occlusion(m, window=4, stride=4),
        lambda m: normgrad.RISE(m, n_masks=8, cell_size=4),  # sigmoid(z), sigmoid(-z)
    ],
    ids=["grad-cam", "occlusion", "rise"],
)
def test_single_logit_model_explains_both_classes(build: Any) -> None:
    model = seeded(TinyCNN(num_classes=1)).double()
    explainer = build(model)
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([[0, 1]] * 3)
    together = explainer.explain(x, target)
    separate = [explainer.explain(x, target[:, k]) for k in range(2)]
    _assert_per_class(together, separate, 3)
    if not isinstance(explainer, normgrad.GradCAM):  # scored as alone, bit for bit
        assert all(torch.equal(together.raw[:, k], separate[k].raw[:, 0]) for k in range(2))


@pytest.mark.parametrize(
    "target, error",
    [
        (torch.zeros(3, 2, dtype=torch.long), normgrad.ShapeError),
        (torch.zeros(2, 0, dtype=torch.long), normgrad.ShapeError),
        (torch.zeros(2, 2, 1, dtype=torch.long), normgrad.ShapeError),
        (torch.tensor([[0, 5], [1, 2]]), normgrad.InvalidArgumentError),
    ],
)
def test_wrong_class_tables_are_refused(target: torch.Tensor, error: type) -> None:
    model = seeded(TinyCNN(num_classes=5))
    for method in ("normgrad", "smoothgrad", "integrated-gradients"):
        with pytest.raises(error, match="target"):
            FACTORIES[method](model, ["relu3"]).explain(torch.randn(2, 3, 12, 12), target)


@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 3),
    k=st.integers(1, 3),
    form=st.sampled_from(["masks", "boxes", "padded"]),
    tolerance=st.sampled_from([0.0, 1.5, 3.0]),
)
@examples(20)
def test_pointing_game_per_class_equals_the_reference(
    seed: int, n: int, k: int, form: str, tolerance: float
) -> None:
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, k, 7, 8, generator=gen, dtype=torch.float64)
    maps[0, 0] = 0.5  # a constant map: a miss
    lo = torch.randint(0, 6, (n, k, 2), generator=gen)
    boxes = torch.cat([lo, lo + torch.randint(0, 3, (n, k, 2), generator=gen)], dim=2).double()
    masks = torch.stack(
        [
            torch.stack([reference_box_mask(boxes[i, j : j + 1], (7, 8)) for j in range(k)])
            for i in range(n)
        ]
    )
    if n > 1:  # a class without a region: not counted
        masks[1, 0] = False
    regions: Any = masks
    if form == "boxes":
        regions = [
            [boxes[i, j : j + 1] if masks[i, j].any() else boxes[i, :0] for j in range(k)]
            for i in range(n)
        ]
    elif form == "padded":
        regions = boxes.unsqueeze(2).clone()
        regions[~masks.flatten(2).any(dim=2)] = float("nan")
    got = metrics.pointing_game_per_class(maps, regions, tolerance)
    assert got.shape == (n, k)
    for j in range(k):
        expected = reference_pointing_game(maps[:, j], masks[:, j], tolerance, [1.0, 1.0])
        assert torch.allclose(got[:, j], torch.tensor(expected), equal_nan=True), (j, form)


@pytest.mark.parametrize(
    "regions, error, pattern",
    [
        (torch.zeros(2, 3, 8, 8, dtype=torch.bool), normgrad.ShapeError, r"N = 2 and K = 2"),
        ([torch.zeros(1, 4)] * 2, normgrad.ArgumentTypeError, r"regions\[0\]: .* per class"),
        ([[torch.zeros(0, 4)]] * 2, normgrad.ArgumentTypeError, r"regions\[0\]: .* K = 2"),
        ([[torch.zeros(0, 4)] * 2], normgrad.ShapeError, r"regions: expected .* N = 2"),
    ],
)
def test_ambiguous_per_class_regions_are_refused(regions: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        metrics.pointing_game_per_class(torch.rand(2, 2, 8, 8), regions)
    with pytest.raises(normgrad.ShapeError, match=r"saliency: expected maps per class"):
        metrics.pointing_game_per_class(torch.rand(2, 8, 8), regions)


_BOX = [2, 2, 6, 6]


@pytest.mark.parametrize(
    ("bad", "error", "named"),
    [
        ([9, 9, 3, 3], normgrad.InvalidArgumentError, "regions[1][1][0] = [9.0, 9.0, 3.0, 3.0]"),
        ([1, float("nan"), 3, 3], normgrad.InvalidArgumentError, "regions[1][1][0] = [1.0, nan"),
        ([1, 2, 3], normgrad.ArgumentTypeError, "regions[1][1][0]: expected a box of 4"),
        ("box", normgrad.ArgumentTypeError, "regions[1][1]: expected boxes"),
    ],
)
def test_a_bad_region_of_a_class_is_named_by_its_image_and_class(
    bad: Any, error: type, named: str
) -> None:
    """Regions per class are scored as the pairs' regions, but an error names the region
    as the caller gave it: ``regions[image][class][box]``, in the metric and in
    ``evaluate``."""
    regions = [[[_BOX], [_BOX]], [[_BOX], [bad] if bad != "box" else bad], [[_BOX], [_BOX]]]
    with pytest.raises(error) as raised:
        metrics.pointing_game_per_class(torch.rand(3, 2, 8, 8), regions)
    assert named in str(raised.value), str(raised.value)
    model = seeded(TinyCNN(num_classes=5))
    data = [(torch.randn(3, 3, 8, 8), torch.tensor([[0, 1], [2, 3], [4, 0]]), regions)]
    with pytest.raises(error) as raised:
        normgrad.evaluate(model, {"g": normgrad.Gradient(model)}, data, progress=False)
    assert named in str(raised.value), str(raised.value)


def test_a_region_of_a_class_outside_the_map_is_named_by_its_image_and_class() -> None:
    regions = [[[_BOX], [_BOX]], [[_BOX], [[20, 20, 30, 30]]]]
    with pytest.warns(UserWarning) as warned:
        metrics.pointing_game_per_class(torch.rand(2, 2, 8, 8), regions)
    message = str(warned[0].message)
    assert "regions: (image, class) pairs [(1, 1)] have regions wholly outside" in message
    assert "e.g. regions[1][1][0] spans x 20 to 30" in message, message


def test_evaluate_scores_every_image_and_class_pair() -> None:
    model = seeded(TinyCNN(num_classes=5))
    gen = torch.Generator().manual_seed(4)
    batches = []
    for b in range(2):
        x = torch.randn(3, 3, 16, 16, generator=gen)
        labels = torch.tensor([[0, 2], [1, 4], [3, 0]])
        masks = torch.rand(3, 2, 16, 16, generator=gen) > 0.9
        masks[0, 1] = False  # no region of that class: not counted
        batches.append((x, labels, masks, [f"b{b}i{i}" for i in range(3)]))
    explainers = {
        "NormGrad": normgrad.NormGrad(model, "relu3"),
        "Gradient": normgrad.Gradient(model),
    }
    result = normgrad.evaluate(
        model,
        explainers,
        batches,
        progress=False,
        tolerance=2,
        metrics=["deletion"],
        deletion_options={"steps": 4},
    )
    for name, explainer in explainers.items():
        by_hand = torch.cat(
            [
                metrics.pointing_game_per_class(explainer(x, labels), masks, tolerance=2).flatten()
                for x, labels, masks, _ in batches
            ]
        )
        counted = by_hand[~by_hand.isnan()]
        assert result[name].total == len(counted) == 10
        assert result[name].hits == int(counted.sum())
        records = {r.image: r for r in result.records if r.method == name}
        x, labels, _, ids = batches[1]
        for i, k in [(0, 1), (2, 0)]:  # a pair's deletion: its image, for its class
            c = int(labels[i, k])
            saliency = explainer(x[i : i + 1], c)
            alone = metrics.deletion_insertion(model, x[i : i + 1], saliency, target=c, steps=4)
            got = records[f"{ids[i]}/{c}"].value("deletion")
            assert got == pytest.approx(float(alone.deletion_auc[0]), rel=1e-5)
        assert sorted(records) == sorted(
            f"{i}/{c}"
            for x, labels, m, ids in batches
            for i, row in zip(ids, labels.tolist())
            for c in row
        )


@requires_cuda
def test_k_classes_on_cuda_equal_the_cpu() -> None:
    model = seeded(TinyCNN(num_classes=5)).double()
    # SmoothGrad's noise is drawn by each device's own generator: not compared
    names = [m for m in sorted(FACTORIES) if m != "smoothgrad"]
    methods = [FACTORIES[m](model, ["relu2", "relu3"]) for m in names]
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    target = torch.tensor([[4, 1], [0, 3]])
    on_cpu = normgrad.explain_shared(methods, x, target)
    model.cuda()
    on_cuda = normgrad.explain_shared(methods, x.cuda(), target.cuda())
    for a, b in zip(on_cpu, on_cuda):
        assert torch.allclose(a.saliency, b.saliency.cpu(), atol=1e-8)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: normgrad.Occlusion(m, window=4, stride=4),
        lambda m: normgrad.RISE(m, n_masks=8, cell_size=4, batch_size=4),
    ],
    ids=["occlusion", "rise"],
)
def test_perturbation_methods_score_every_class_from_the_same_passes(build: Any) -> None:
    """Occlusion and RISE read the K classes' scores from the passes one class needs:
    the same forward passes over the same rows, and each class's map equal to its own
    call's."""
    model = seeded(TinyCNN(num_classes=5)).double()
    explainer = build(model)
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    target = torch.tensor([[4, 1, 0], [0, 3, 3]])
    try:
        together = explainer.explain(x, target)
        passes = list(rows)
        rows.clear()
        explainer.explain(x, target[:, 0])
        assert passes == rows and len(passes) > 1
        separate = [explainer.explain(x, target[:, k]) for k in range(3)]
    finally:
        handle.remove()
    _assert_per_class(together, separate, 2)
    for k, alone in enumerate(separate):  # bit for bit: each class scored as it is alone
        assert torch.equal(together.raw[:, k], alone.raw[:, 0])
        assert torch.equal(together.saliency[:, k], alone.saliency[:, 0])


def test_per_class_accuracies_accumulate_over_batches() -> None:
    gen = torch.Generator().manual_seed(8)
    games = [metrics.PointingGame(tolerance=1) for _ in range(2)]
    columns: list[list[float]] = [[], []]
    for _ in range(3):
        maps = torch.rand(4, 2, 9, 9, generator=gen)
        masks = torch.rand(4, 2, 9, 9, generator=gen) > 0.8
        hits = metrics.pointing_game_per_class(maps, masks, tolerance=1)
        for k, game in enumerate(games):
            game.add(hits[:, k])
            columns[k] += reference_pointing_game(maps[:, k], masks[:, k], 1, [1.0, 1.0])
    for game, values in zip(games, columns):
        counted = [v for v in values if v == v]
        assert game.compute().accuracy == pytest.approx(sum(counted) / len(counted))


class _Checkpointed(nn.Module):
    """A block run under non-reentrant activation checkpointing (recomputed in backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        out = checkpoint(self.block, self.stem(x), use_reentrant=False)
        return self.fc(out.mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["normgrad", "gradient"])
def test_checkpointed_blocks_are_differentiated_per_class(method: str) -> None:
    model = seeded(_Checkpointed()).double()
    explainer = FACTORIES[method](model, ["stem"])
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    target = torch.tensor([[0, 1], [2, 3]])
    together = explainer.explain(x, target)
    _assert_per_class(together, [explainer.explain(x, target[:, k]) for k in range(2)], 2)
