"""evaluate refuses what would make a study silently wrong: explainers of another model,
a resume or a rank whose explainers or weights differ, data whose order cannot be read."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

import normgrad

from .conftest import examples
from .models import TinyCNN, seeded
from .reference.checksum import reference_checksum

SIZE = 16


def _model(seed: int = 0) -> nn.Module:
    return seeded(TinyCNN(), seed).double()


def _data(batches: int = 2, batch: int = 3) -> list[tuple[torch.Tensor, torch.Tensor, Any]]:
    gen = torch.Generator().manual_seed(3)
    data = []
    for _ in range(batches):
        x = torch.randn(batch, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, 5, (batch,), generator=gen)
        boxes = [torch.tensor([[2, 2, 9, 9]])] * batch
        data.append((x, labels, boxes))
    return data


class _Counting:
    """Counts the model's forward passes."""

    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, args: Any) -> None:
        self.calls += 1


def test_explainers_of_another_model_are_refused_before_any_pass() -> None:
    trained, randomised = _model(0), _model(1)
    counting = _Counting(randomised)
    explainers = {
        "NormGrad": normgrad.NormGrad(randomised, "conv2"),
        "Grad-CAM": normgrad.GradCAM(trained, "relu3"),  # reused from the trained model
    }
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        normgrad.evaluate(randomised, explainers, _data(), progress=False)
    message = str(error.value)
    assert "explainers['Grad-CAM']" in message and "another model" in message
    assert "Build the explainers of the model you evaluate" in message
    assert counting.calls == 0
    wrapped = {"SmoothGrad": normgrad.SmoothGrad(normgrad.Gradient(trained), n_samples=2)}
    with pytest.raises(normgrad.InvalidArgumentError, match=r"explainers\['SmoothGrad'\]"):
        normgrad.evaluate(randomised, wrapped, _data(), progress=False)
    assert counting.calls == 0


def test_explainers_of_the_model_or_its_wrapper_and_the_centre_baseline_are_accepted() -> None:
    model = _model()
    other = _model(1)
    explainers = {
        "NormGrad": normgrad.NormGrad(model, "conv2"),
        "centre": normgrad.CenterMap(),
        "centre of another": normgrad.CenterMap(other),  # ignores its model
        "SmoothGrad": normgrad.SmoothGrad(normgrad.Gradient(model), n_samples=2),
    }
    result = normgrad.evaluate(model, explainers, _data(1), progress=False, reference_rows=False)
    assert result["NormGrad"].total == 3
    # a DataParallel wrapper runs the same module: its explainers are the model's
    parallel = nn.DataParallel(model)
    wrapped = normgrad.evaluate(parallel, {"g": normgrad.Gradient(model)}, _data(1), progress=False)
    assert wrapped["g"].total == 3
    inner = normgrad.evaluate(model, {"g": normgrad.Gradient(parallel)}, _data(1), progress=False)
    assert inner["g"].hits == wrapped["g"].hits


def _variants(model: nn.Module, **change: Any) -> dict[str, normgrad.Explainer]:
    """The explainers of a study, with one argument changed."""
    seed, baseline = change.get("seed", 0), change.get("baseline")
    layout, size = change.get("layout"), change.get("batch_size", 64)
    return {
        "NormGrad": normgrad.NormGrad(model, ["conv2", "relu3"], "conv1x1", layout=layout),
        "SmoothGrad": normgrad.SmoothGrad(
            normgrad.Gradient(model), n_samples=2, seed=seed, batch_size=size
        ),
        "IG": normgrad.IntegratedGradients(model, steps=2, baseline=baseline, batch_size=size),
    }


def _study(model: nn.Module, path: Any, **change: Any) -> normgrad.EvaluationResult:
    return normgrad.evaluate(
        model, _variants(model, **change), _data(), tolerance=3, progress=False, records=path
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"seed": 1}, "explainers['SmoothGrad'].seed (0 here, 1 in the file)"),
        ({"baseline": 0.5}, "explainers['IG'].baseline (None here, 0.5 in the file)"),
        ({"baseline": torch.zeros(1, 3, 1, 1)}, "explainers['IG'].baseline"),
        ({"layout": "channels_first"}, "explainers['NormGrad'].layouts[0]"),
    ],
)
def test_resuming_with_other_explainer_arguments_is_refused(
    tmp_path: Any, change: dict[str, Any], named: str
) -> None:
    path = tmp_path / "records.csv"
    _study(_model(), path, **change)
    model = _model()
    counting = _Counting(model)
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        _study(model, path)
    assert named in str(error.value) and "records" in str(error.value)
    assert counting.calls == 0


def test_resuming_with_other_weights_is_refused_and_the_same_study_is_accepted(
    tmp_path: Any,
) -> None:
    path = tmp_path / "records.csv"
    model = _model()
    first = _study(model, path)
    # the same explainers, after a run, and explainers built again: accepted, nothing done
    explainers = _variants(model)
    normgrad.evaluate(model, explainers, _data(), tolerance=3, progress=False)
    counting = _Counting(model)
    # batch_size bounds memory only (the maps do not depend on it): it may change
    for chosen in (explainers, _variants(model), _variants(model, batch_size=3)):
        again = normgrad.evaluate(model, chosen, _data(), tolerance=3, progress=False, records=path)
        assert [r.hits for r in again.rows] == [r.hits for r in first.rows]
    assert counting.calls == 0
    # one weight changed by a little, one buffer changed: refused, naming the tensor
    for name in ("fc.bias", "bn1.running_mean"):
        changed = _model()
        with torch.no_grad():
            tensor = dict([*changed.named_parameters(), *changed.named_buffers()])[name]
            tensor.view(-1)[0] += 1e-12
        with pytest.raises(normgrad.InvalidArgumentError, match=rf"model weights \({name}\)"):
            _study(changed, path)


def test_token_layouts_are_told_apart() -> None:
    from normgrad._evaluation.fingerprint import describe_differences, explainer_fingerprint

    model = _model()
    one, two = (
        {"e": explainer_fingerprint(normgrad.NormGrad(model, "conv2", layout=layout), model)}
        for layout in (normgrad.Tokens(prefix=1), normgrad.Tokens(prefix=2))
    )
    assert one != two
    assert describe_differences({"explainers": one}, {"explainers": two}, "rank 1") == (
        "explainers['e'].layouts[0].prefix (1 here, 2 in rank 1)"
    )


def _checksum(tensor: torch.Tensor) -> list[int]:
    from normgrad._evaluation.checksum import checksum

    return [int(v) for v in checksum(tensor).tolist()]


@examples(40)
@given(
    values=st.lists(st.floats(width=32, allow_nan=False), min_size=0, max_size=300),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int8, torch.bool]),
    sizes=st.sampled_from([(4, 8), (16, 32), (64, 1 << 22)]),
)
def test_the_weight_checksum_equals_the_literal_one(
    values: list[float], dtype: torch.dtype, sizes: tuple[int, int]
) -> None:
    from normgrad._evaluation import checksum

    tensor = torch.tensor(values, dtype=torch.float64).clamp(-1e4, 1e4).to(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checksum, "_ROW", sizes[0])
        patch.setattr(checksum, "_BLOCK", sizes[1])  # several blocks of rows
        assert _checksum(tensor) == reference_checksum(tensor.numpy().tobytes())


@examples(100)
@given(
    values=st.lists(
        st.floats(width=32, allow_nan=False) | st.sampled_from([0.5, -0.25, 1.0, -2.0]),
        min_size=1,
        max_size=12,
    ),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
    signs=st.lists(st.booleans(), min_size=12, max_size=12),
    keys=st.lists(st.integers(0, 20), min_size=12, max_size=12),
    bit=st.integers(0, 1 << 20),
)
@example([0.5, -0.25, -0.125, 0.75], torch.float32, [True] * 12, list(range(12)), 0)
@example([0.5, 0.25, -0.125, 0.75], torch.float32, [True, True, True] + [False] * 9, [0] * 12, 0)
def test_sign_flips_bit_flips_and_permutations_change_the_weight_checksum(
    values: list[float], dtype: torch.dtype, signs: list[bool], keys: list[int], bit: int
) -> None:
    """A checksum whose changes cancel in structured ways (a sum of words: a sign flip is
    +-2**31 = +-1 modulo 2**31 - 1) misses these; this one never does, or with a chance of
    2**-62."""
    tensor = torch.tensor(values, dtype=torch.float64).clamp(-1e4, 1e4).to(dtype)
    n = tensor.numel()
    order = sorted(range(n), key=lambda i: keys[i])  # a permutation (stable for ties)
    bit %= n * tensor.element_size() * 8
    raw = bytearray(tensor.view(torch.uint8).numpy().tobytes())
    raw[bit // 8] ^= 1 << (bit % 8)
    flips = torch.where(torch.tensor(signs[:n]), -1.0, 1.0).to(dtype)
    changes = [
        tensor * flips,
        tensor[torch.tensor(order)],
        torch.frombuffer(raw, dtype=torch.uint8).view(dtype).clone(),
    ]
    before = _checksum(tensor)
    for changed in changes:
        if changed.view(torch.uint8).tolist() != tensor.view(torch.uint8).tolist():
            assert all(a != b for a, b in zip(_checksum(changed), before)), changed


def test_opposite_signs_do_not_cancel_in_the_fingerprint() -> None:
    from normgrad._evaluation.fingerprint import model_fingerprint

    def linear(bias: list[float], weight: float = 0.25) -> nn.Module:
        layer = nn.Linear(3, 4)
        with torch.no_grad():
            layer.weight.fill_(weight)
            layer.bias.copy_(torch.tensor(bias))
        return layer

    bias = [0.5, -0.25, -0.125, 0.75]
    pairs = [
        (linear(bias), linear([-b for b in bias])),
        (linear([1.0, 2, 3, 4]), linear([-1.0, -2, 3, 4])),
        (linear(bias, 1.0), linear(bias, float(torch.tensor(-1.0).nextafter(torch.tensor(-2.0))))),
    ]
    for a, b in pairs:
        assert model_fingerprint(a) != model_fingerprint(b)
    for flips in range(1, 16):  # every sign pattern of the bias
        signs = [-1 if flips >> i & 1 else 1 for i in range(4)]
        flipped = linear([s * b for s, b in zip(signs, bias)])
        assert model_fingerprint(flipped) != model_fingerprint(linear(bias))


class _Samples(torch.utils.data.Dataset[Any]):
    """Six images with a box each."""

    def __init__(self) -> None:
        self.batches = _data(2)

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        x, labels, boxes = self.batches[i // 3]
        return x[i % 3], labels[i % 3], boxes[i % 3]


class _Stream(torch.utils.data.IterableDataset[Any]):
    """The same six images as a stream (no length)."""

    def __iter__(self) -> Any:
        samples = _Samples()
        return iter(samples[i] for i in range(len(samples)))


def _loader(data: Any, **kwargs: Any) -> torch.utils.data.DataLoader[Any]:
    return torch.utils.data.DataLoader(
        data, batch_size=3, collate_fn=normgrad.metrics.collate, **kwargs
    )


def test_a_shuffled_loader_without_ids_is_refused_with_records(tmp_path: Any) -> None:
    model = _model()
    explainers = {"g": normgrad.Gradient(model)}
    counting = _Counting(model)
    samples = _Samples()
    for loader in (
        _loader(samples, shuffle=True),
        _loader(samples, sampler=torch.utils.data.SubsetRandomSampler(range(6))),
        torch.utils.data.DataLoader(
            samples,
            batch_sampler=torch.utils.data.BatchSampler(
                torch.utils.data.RandomSampler(samples), 3, drop_last=False
            ),
            collate_fn=normgrad.metrics.collate,
        ),
    ):
        with pytest.raises(normgrad.InvalidArgumentError) as error:
            normgrad.evaluate(model, explainers, loader, progress=False, records=tmp_path / "r.csv")
        assert "shuffles" in str(error.value) and "yield ids" in str(error.value)
    assert counting.calls == 0
    # without records the order does not matter; in a fixed order, records are fine
    shuffled = normgrad.evaluate(model, explainers, _loader(samples, shuffle=True), progress=False)
    fixed = normgrad.evaluate(
        model, explainers, _loader(samples), progress=False, records=tmp_path / "r.csv"
    )
    assert [r.hits for r in shuffled.rows] == [r.hits for r in fixed.rows]


def test_a_loader_of_an_iterable_dataset_runs_without_a_total(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model()
    explainers = {"g": normgrad.Gradient(model)}
    stream = normgrad.evaluate(
        model, explainers, _loader(_Stream()), progress=True, records=tmp_path / "r.csv"
    )
    err = capsys.readouterr().err
    assert "evaluate: batch 2, 6 images" in err and "s left" not in err
    sized = normgrad.evaluate(model, explainers, _loader(_Samples()), progress=False)
    assert [r.hits for r in stream.rows] == [r.hits for r in sized.rows]
    assert [(r.image, r.hit) for r in stream.records] == [(r.image, r.hit) for r in sized.records]


@pytest.mark.parametrize(
    ("labels", "error", "problem"),
    [
        (torch.tensor([1.0, 2.0, 0.0]), normgrad.ArgumentTypeError, "dtype torch.float32"),
        ([0.5, 1, 2], normgrad.ArgumentTypeError, "got list [0.5, 1, 2]"),
        (torch.tensor([1, 2]), normgrad.ShapeError, "shape (3,)"),
    ],
)
def test_bad_labels_are_named_as_the_datas_labels(
    labels: Any, error: type[Exception], problem: str
) -> None:
    model = _model()
    counting = _Counting(model)
    (x, _, boxes), second = _data(2)
    data = [second, (x, labels, boxes)]
    with pytest.raises(error) as raised:
        normgrad.evaluate(model, {"g": normgrad.Gradient(model)}, data, progress=False)
    message = str(raised.value)
    assert message.startswith("data: the labels of batch 2") and problem in message, message
    assert "target" not in message
    assert counting.calls == 1  # the first batch only


@pytest.mark.parametrize(
    "explainer",
    [
        lambda m: normgrad.Gradient(m),
        lambda m: normgrad.RISE(m, n_masks=2, cell_size=8),
        lambda m: normgrad.SmoothGrad(normgrad.GradCAM(m, "conv2"), n_samples=2),
    ],
)
@pytest.mark.parametrize(
    "labels", [torch.tensor([1, 7, 0]), torch.tensor([[0, 1], [2, -1], [3, 4]])]
)
def test_labels_outside_the_models_classes_are_named_as_the_datas_labels(
    explainer: Any, labels: torch.Tensor
) -> None:
    """A class the model has not (found in the explainers' pass) is the data's label of a
    batch, named so, not the ``target`` it becomes."""
    model = _model()
    (x, _, boxes), second = _data(2)
    regions = [[b, b] for b in boxes] if labels.ndim == 2 else boxes
    data = [second, (x, labels, regions)]
    with pytest.raises(normgrad.InvalidArgumentError) as raised:
        normgrad.evaluate(model, {"e": explainer(model)}, data, progress=False)
    message = str(raised.value)
    assert message.startswith("data: the labels of batch 2"), message
    assert "expected class indices in [0, 5) for a model with 5 output(s)" in message, message


class _Sharper(TinyCNN):
    """TinyCNN's weights, another forward pass (logits doubled)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_resuming_with_another_model_class_of_the_same_weights_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "records.csv"
    _study(_model(), path)
    sharper = _Sharper().double()
    sharper.load_state_dict(_model().state_dict())
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        _study(sharper, path)
    assert (
        "model class (tests.test_evaluation_guards._Sharper here, tests.models.TinyCNN in the file)"
        in str(error.value)
    )
    assert "model weights (" not in str(error.value)


def _leaky(slope: float) -> Any:
    return functools.partial(nn.functional.leaky_relu, negative_slope=slope)


def _attributes(model: nn.Module) -> None:
    """The attributes the modules of ``test_resuming_with_other_modules...`` start with."""
    model.scale = None  # type: ignore[assignment]
    model.mask = torch.zeros(3)
    model.stats = (torch.zeros(3), torch.ones(3))  # a tuple of tensors
    model.act = _leaky(0.1)  # a function with its arguments
    _heads(model, 4)


def _heads(model: nn.Module, heads: int) -> None:
    model.attention = nn.MultiheadAttention(16, 4, batch_first=True)  # unused by forward
    with torch.no_grad():
        for p in model.attention.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).view(p.shape))
    model.attention.num_heads, model.attention.head_dim = heads, 16 // heads


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: setattr(m, "relu2", nn.LeakyReLU(0.3)), "relu2 type"),
        (lambda m: setattr(m, "pool", nn.AdaptiveMaxPool2d(1)), "pool type"),
        (lambda m: setattr(m.bn1, "eps", 0.1), "bn1 settings"),
        (lambda m: setattr(m.conv2, "padding_mode", "reflect"), "conv2 settings"),
        (lambda m: setattr(m, "scale", 2.0), "the model itself scale (2.0 here, None"),
        (lambda m: setattr(m, "mask", torch.ones(3)), "model weights (mask)"),
        (lambda m: _heads(m, 2), "attention num_heads (2 here, 4 in the file)"),
        (lambda m: setattr(m, "stats", (torch.ones(3), torch.ones(3))), "model weights (stats[0])"),
        (lambda m: setattr(m, "act", _leaky(0.3)), "the model itself act"),
    ],
)
def test_resuming_with_other_modules_of_the_same_weights_is_refused(
    tmp_path: Any, change: Any, named: str
) -> None:
    """Another activation, pooling, eps, padding mode, number of heads or attribute
    changes the maps with the same weights: refused, naming the module."""
    path = tmp_path / "records.csv"
    first = _model()
    _attributes(first)
    explainers = {"NormGrad": normgrad.NormGrad(first, "conv2")}
    normgrad.evaluate(first, explainers, _data(), tolerance=3, progress=False, records=path)
    again = normgrad.evaluate(first, explainers, _data(), tolerance=3, progress=False, records=path)
    assert again.rows[0].total == 6  # the same model: resumed
    changed = _model()
    _attributes(changed)
    change(changed)
    counting = _Counting(changed)
    with pytest.raises(normgrad.InvalidArgumentError) as error:
        normgrad.evaluate(
            changed, {"NormGrad": normgrad.NormGrad(changed, "conv2")}, _data(), tolerance=3,
            progress=False, records=path,
        )  # fmt: skip
    assert "model modules" in str(error.value) or "model weights" in str(error.value)
    assert named in str(error.value), str(error.value)
    assert counting.calls == 0


def test_bookkeeping_attributes_of_a_module_do_not_refuse_a_resume(tmp_path: Any) -> None:
    """Dicts a model fills as it runs (warnings issued, caches) and the path its weights
    were loaded from are not settings: a resume with them changed is accepted."""
    path = tmp_path / "records.csv"
    model = _model()
    model.warnings_issued, model.name_or_path = {}, "/old/checkpoint"  # as HF models have
    explainers = {"NormGrad": normgrad.NormGrad(model, "conv2")}
    first = normgrad.evaluate(model, explainers, _data(), progress=False, records=path)
    model.warnings_issued["padding"], model.name_or_path = True, "/new/checkpoint"
    model.cache = {"sizes": [3]}
    again = normgrad.evaluate(model, explainers, _data(), progress=False, records=path)
    assert [r.hits for r in again.rows] == [r.hits for r in first.rows]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_weight_checksum_is_the_same_on_cuda() -> None:
    from normgrad._evaluation import checksum

    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.float64, torch.int8):
        for size in (0, 1, 63, 64, 1000, (1 << 22) + 5):
            tensor = (torch.randn(size, generator=gen) * 50).to(dtype)
            on_cpu = checksum.checksum(tensor).tolist()
            assert checksum.checksum(tensor.cuda()).tolist() == on_cpu, (dtype, size)


class _Maps(normgrad.Explainer):
    """Fixed maps of the input's size, one of them with a NaN, or a pixel too narrow."""

    def __init__(self, model: nn.Module, fault: str = "") -> None:
        super().__init__(model)
        self.fault = fault

    def explain(self, x: torch.Tensor, target: Any = None) -> normgrad.Explanation:
        maps = torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(0))
        if self.fault == "nan":
            maps[0, 0, 1, 1] = float("nan")
        if self.fault == "narrow":
            maps = maps[..., :-1]
        return normgrad.Explanation(saliency=maps, raw=None, classes=None)


@pytest.mark.parametrize(
    "fault, error, pattern",
    [
        ("nan", normgrad.InvalidArgumentError, "saliency: expected maps without NaN"),
        ("narrow", normgrad.ShapeError, "regions: expected regions prepared for maps of shape"),
    ],
)
def test_a_later_methods_bad_maps_are_named_by_the_pointing_game_with_peaks_metrics(
    fault: str, error: type, pattern: str
) -> None:
    """The metrics that search every method's maps at once (FROC, the multi-object game)
    run after every method's Pointing Game has checked its maps: a bad map is refused
    with the Pointing Game's error, as when each method was scored alone."""
    model = _model()
    methods = {"fine": _Maps(model), "bad": _Maps(model, fault)}
    with pytest.raises(error, match=pattern):
        normgrad.evaluate(model, methods, _data(1), metrics=("froc", "multi"), progress=False)
