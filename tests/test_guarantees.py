"""Guarantees about the model, the input, threads and errors, each as a user would hit it.

Each test names the promise of docs/guarantees.md it checks.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.utils.checkpoint as cp
import torchvision
from torch import nn

import normgrad
from normgrad import ArgumentTypeError, InvalidArgumentError, LayerError, ShapeError, metrics
from normgrad._errors import NonFiniteError, UnsupportedModelError

from .explainers import EXPLAINERS
from .lifecycle import assert_unchanged, snapshot
from .models import TinyCNN, seeded

LAYERS = ["conv2", "conv3"]


def _x(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------
# the score's units do not matter (defect 1)


def test_guided_grad_cam_peaks_at_one_whatever_the_score_units() -> None:
    model = seeded(torchvision.models.resnet18(num_classes=3))
    x = _x()
    explainer = normgrad.GuidedGradCAM(model, "layer3")
    tiny = explainer(x, target=lambda o: o[:, 0] * 1e-6)
    plain = explainer(x, target=0)
    assert tiny.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]
    assert tiny.amin(dim=(1, 2, 3)).tolist() == [0.0, 0.0]
    torch.testing.assert_close(tiny, plain, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------
# non-finite values raise, naming the samples and the cause (defect 2)


def test_stale_batchnorm_statistics_raise_naming_samples_and_module() -> None:
    model = seeded(TinyCNN())
    with torch.no_grad():
        model.bn1.running_var.zero_()
    model.bn1.eps = 0.0  # division by zero in eval mode, as stale statistics overflow
    before = snapshot(model, _x())
    for name in ("normgrad", "gradient", "grad-cam"):
        with pytest.raises(NonFiniteError, match=r"sample\(s\) \[0, 1\].*'bn1' \(BatchNorm2d\)"):
            EXPLAINERS[name](model, LAYERS)(_x())
    after = snapshot(model, _x())
    assert bool(before.eval_output.isnan().all()) and bool(after.eval_output.isnan().all())
    before.eval_output = after.eval_output = torch.zeros(())  # NaN != NaN; the rest must hold
    assert_unchanged(before, after)


def test_only_the_overflowing_sample_is_named() -> None:
    model = seeded(TinyCNN())
    x = _x(3)
    x[1] *= 1e36  # fits float32, overflows in the first convolution
    with pytest.raises(NonFiniteError, match=r"sample\(s\) \[1\] of the batch of 3"):
        normgrad.NormGrad(model, LAYERS)(x)


class SqrtHead(nn.Module):
    """Finite scores whose gradient is NaN where the activation is exactly 0 (sqrt(|y|))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).abs().sqrt().mean(dim=(2, 3)))


def test_non_finite_gradient_raises() -> None:
    torch.manual_seed(0)
    x = _x()
    x[1, :, :8] = 0  # the convolution's output is exactly 0 there
    with pytest.raises(
        NonFiniteError,
        match=r"with respect to layer 'conv' is NaN or infinite for sample\(s\) \[1\]",
    ):
        normgrad.NormGrad(SqrtHead(), "conv")(x)


# ---------------------------------------------------------------------------------------
# threads: calls on one model are serialised (defect 3)


def test_threads_on_one_train_mode_model_equal_sequential_calls() -> None:
    model = seeded(TinyCNN()).train()
    probe = _x(1, seed=99)
    before = snapshot(model, probe)
    names = ["normgrad", "grad-cam", "guided-backprop", "integrated-gradients"]
    jobs = [(EXPLAINERS[n](model, LAYERS), _x(2, seed=i)) for i, n in enumerate(names * 3)]
    sequential = [e(x, 1) for e, x in jobs]
    assert_unchanged(before, snapshot(model, probe))
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: job[0](job[1], 1), jobs))
    for a, b in zip(sequential, threaded):
        assert torch.equal(a, b)
    assert model.training
    assert_unchanged(before, snapshot(model, probe))


def test_a_target_that_explains_the_same_model_may_nest() -> None:
    model = seeded(TinyCNN())
    inner = normgrad.Gradient(model)
    seen = []

    def target(output: torch.Tensor) -> torch.Tensor:
        seen.append(inner(_x(1, seed=5), 0))  # same model, same thread: no deadlock
        return output[:, 2]

    nested = normgrad.NormGrad(model, LAYERS)(_x(), target)
    assert len(seen) == 1
    assert torch.equal(nested, normgrad.NormGrad(model, LAYERS)(_x(), 2))


# ---------------------------------------------------------------------------------------
# the caller's input is never written (defect 5)


class NormalisesInPlace(TinyCNN):
    """Normalises its input in place, as some preprocessing-in-the-model code does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.sub_(0.25).div_(2.0)
        return super().forward(x)


class NormalisesOutOfPlace(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x - 0.25) / 2.0)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explainers_never_write_the_callers_input(name: str) -> None:
    in_place = seeded(NormalisesInPlace())
    out_of_place = seeded(NormalisesOutOfPlace())
    x = _x()
    kept = x.clone()
    result = EXPLAINERS[name](in_place, LAYERS)(x, 1)
    assert torch.equal(x, kept)
    expected = EXPLAINERS[name](out_of_place, LAYERS)(x, 1)
    torch.testing.assert_close(result, expected)


# ---------------------------------------------------------------------------------------
# a callable target sees the caller's batch (defect 6)


@pytest.mark.parametrize("name", ["smoothgrad", "integrated-gradients"])
def test_callable_written_for_the_batch_works_on_stacked_copies(name: str) -> None:
    model = seeded(TinyCNN())
    labels = torch.tensor([1, 3])
    explainer = EXPLAINERS[name](model, LAYERS)
    by_callable = explainer.explain(_x(), lambda o: o[torch.arange(2), labels])
    by_classes = explainer.explain(_x(), labels)
    assert by_callable.classes is None
    torch.testing.assert_close(by_callable.saliency, by_classes.saliency)


class TupleOut(TinyCNN):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:  # type: ignore[override]
        return super().forward(x), "aux"


def test_callable_on_tuple_outputs_sees_each_copy() -> None:
    model = seeded(TupleOut())
    labels = torch.tensor([1, 3])
    explainer = normgrad.IntegratedGradients(model, steps=4)
    by_callable = explainer(_x(), lambda o: o[0][torch.arange(2), labels])
    plain = normgrad.IntegratedGradients(seeded(TinyCNN()), steps=4)(_x(), labels)
    torch.testing.assert_close(by_callable, plain)


class ModelOutputLike(OrderedDict):  # type: ignore[type-arg]
    """What transformers' ``ModelOutput`` is, built here: an ``OrderedDict`` dataclass whose
    fields that are not None are its items, item and attribute kept in step."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is not None:
                self[field.name] = value

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __setattr__(self, key: str, value: object) -> None:
        if key in self.keys() and value is not None:
            super().__setitem__(key, value)
        super().__setattr__(key, value)


@dataclasses.dataclass
class ClassifierOutput(ModelOutputLike):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    memory: torch.Tensor | None = None
    attentions: torch.Tensor | None = None


class StructuredOut(TinyCNN):
    """TinyCNN's logits in a ModelOutput, with a 0-d loss and a (12, 16) tensor that is not
    per sample (12 divides by the 3 or 4 copies stacked below, and is not their N * copies)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "bank", torch.randn(12, 16, generator=torch.Generator().manual_seed(3))
        )

    def forward(self, x: torch.Tensor) -> ClassifierOutput:  # type: ignore[override]
        logits = super().forward(x)
        return ClassifierOutput(loss=logits.square().mean(), logits=logits, memory=self.bank * 2)


@pytest.mark.parametrize("name", ["smoothgrad", "integrated-gradients"])
def test_structured_outputs_reach_the_callable_with_their_type(name: str) -> None:
    model = seeded(StructuredOut())
    plain = TinyCNN()
    plain.load_state_dict(model.state_dict(), strict=False)
    labels = torch.tensor([1, 3])
    seen: list[tuple[type, tuple[int, ...], tuple[int, ...], object]] = []

    def score(output: ClassifierOutput) -> torch.Tensor:
        assert output.logits is not None and output.memory is not None
        assert output.loss is not None
        seen.append(
            (type(output), tuple(output.memory.shape), tuple(output.loss.shape), output.attentions)
        )
        return output.logits[torch.arange(2), labels]

    build: dict[str, Callable[[nn.Module], normgrad.Explainer]] = {
        # all copies in one pass, so the output holds 3 (4) stacked copies of the batch
        "smoothgrad": lambda m: normgrad.SmoothGrad(normgrad.NormGrad(m, LAYERS), 3, batch_size=6),
        "integrated-gradients": lambda m: normgrad.IntegratedGradients(m, steps=4, batch_size=8),
    }
    by_callable = build[name](model).explain(_x(), score)
    assert len(seen) == (3 if name == "smoothgrad" else 4)
    assert set(seen) == {(ClassifierOutput, (12, 16), (), None)}
    expected = build[name](plain).explain(_x(), labels)
    torch.testing.assert_close(by_callable.saliency, expected.saliency)


class TableOut(TinyCNN):
    """TinyCNN's logits in a ModelOutput beside a table of ``rows`` weights made in the
    forward pass (not per sample, not a parameter or buffer) and the predicted classes (per
    sample, integer, no gradient)."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, x: torch.Tensor) -> ClassifierOutput:  # type: ignore[override]
        logits = super().forward(x)
        table = torch.linspace(0.5, 2.0, self.rows, dtype=x.dtype)
        return ClassifierOutput(logits=logits, memory=table, attentions=logits.argmax(dim=1))


@pytest.mark.parametrize("rows", [4, 6])
@pytest.mark.parametrize("name", ["smoothgrad", "integrated-gradients"])
def test_a_table_as_long_as_the_stacked_copies_is_not_cut(name: str, rows: int) -> None:
    """A table whose length equals N x copies in some run of copies (4: IG's runs of 2
    copies of 2 images; 6: SmoothGrad's runs of 3) reaches the callable whole, while the
    per-sample fields are cut: the map equals the one for the same score with the table
    known beforehand."""
    model = seeded(TableOut(rows))
    plain = TinyCNN()
    plain.load_state_dict(model.state_dict())
    table = torch.linspace(0.5, 2.0, rows)
    labels = torch.tensor([1, 0])
    seen: set[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = set()

    def score(output: ClassifierOutput) -> torch.Tensor:
        assert output.logits is not None and output.memory is not None
        assert output.attentions is not None
        seen.add((output.logits.shape, output.memory.shape, output.attentions.shape))
        return output.logits[torch.arange(2), labels] * output.memory[labels + 1]

    build: dict[str, Callable[[nn.Module], normgrad.Explainer]] = {
        "smoothgrad": lambda m: normgrad.SmoothGrad(normgrad.Gradient(m), 4, batch_size=6),
        "integrated-gradients": lambda m: normgrad.IntegratedGradients(m, steps=5, batch_size=4),
    }
    by_callable = build[name](model).explain(_x(), score)
    assert seen == {((2, 5), (rows,), (2,))}
    expected = build[name](plain).explain(
        _x(), lambda out: out[torch.arange(2), labels] * table[labels + 1]
    )
    torch.testing.assert_close(by_callable.saliency, expected.saliency)


def test_a_copy_of_the_output_keeps_only_its_samples() -> None:
    """Each copy's fields hold that copy's samples, as items and as attributes."""
    from normgrad._model.targets import PerCopy

    logits = torch.arange(12.0).view(6, 2)
    output = ClassifierOutput(loss=torch.tensor(0.5), logits=logits, memory=torch.ones(9, 2))
    parts: list[ClassifierOutput] = []

    def score(part: ClassifierOutput) -> torch.Tensor:
        parts.append(part)
        assert part.logits is not None
        return part.logits[:, 0]

    scores = PerCopy(score, 3, 2)(output)
    assert torch.equal(scores, logits[:, 0])
    for i, part in enumerate(parts):
        assert type(part) is ClassifierOutput and list(part) == ["loss", "logits", "memory"]
        assert part.logits is part["logits"] and torch.equal(
            part["logits"], logits[2 * i : 2 * i + 2]
        )
        assert part.memory is output.memory and part.loss is output.loss
    assert output.logits is logits and len(output) == 3  # the model's output is untouched
    with pytest.raises(ShapeError, match=r"3 copies of the batch \(6 samples\)"):
        PerCopy(score, 3, 2)(torch.zeros(9, 2))


def test_a_layer_no_gradient_reaches_is_named_as_the_cause() -> None:
    """torchvision's ViT starts its head at zero: no gradient reaches any layer, every map is
    constant, and the warning says why (not only a map too small or a VIL too large)."""
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=3,
    )
    assert not model.heads.head.weight.any() and not model.heads.head.bias.any()
    layer = "encoder.layers.encoder_layer_0"
    with pytest.warns(UserWarning) as record:
        normgrad.NormGrad(model, layer, "scaling")(_x(), 1)
    messages = [str(w.message) for w in record]
    assert any(
        m.startswith(f"no gradient reaches layer {layer!r} for sample(s) [0, 1]") for m in messages
    ), messages
    constant = [m for m in messages if "gives a constant map" in m]
    assert constant and "no gradient reaching the layer" in constant[0]
    with pytest.warns(UserWarning, match=r"no gradient reaches the input for sample\(s\) \[0, 1\]"):
        normgrad.Gradient(model)(_x(), 1)
    # with a head that is not zero, nothing is said
    seeded(model.heads, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normgrad.NormGrad(model, layer, "scaling")(_x(), 1)
        normgrad.Gradient(model)(_x(), 1)


# ---------------------------------------------------------------------------------------
# a single logit is a binary classifier (defect 7)


def _binary_model() -> tuple[nn.Module, torch.Tensor]:
    model = seeded(TinyCNN(num_classes=1))
    x = _x()
    with torch.no_grad():
        logits = model(x)[:, 0]
        model.fc.bias -= logits.mean()  # one sample on each side of 0
        logits = model(x)[:, 0]
    assert sorted(bool(v > 0) for v in logits) == [False, True]
    return model, logits


def test_single_logit_predicted_class_is_the_logits_sign() -> None:
    model, logits = _binary_model()
    x = _x()
    gradcam = normgrad.GradCAM(model, "conv3")
    result = gradcam.explain(x)
    assert result.classes.tolist() == (logits > 0).long().tolist()
    sign = torch.where(logits > 0, 1.0, -1.0)
    expected = gradcam(x, lambda o: sign * o[:, 0])
    torch.testing.assert_close(result.saliency, expected)
    # class 0 is explained by -logit, class 1 by +logit: Grad-CAM differs, NormGrad not
    assert not torch.allclose(gradcam(x, 0), gradcam(x, 1))
    torch.testing.assert_close(gradcam(x, 0), gradcam(x, lambda o: -o[:, 0]))
    ng = normgrad.NormGrad(model, LAYERS)
    torch.testing.assert_close(ng(x, 0), ng(x, 1))
    with pytest.raises(InvalidArgumentError, match=r"a single logit: class 0 or 1\), got \[2\]"):
        gradcam(x, 2)


# ---------------------------------------------------------------------------------------
# degenerate layers warn at the caller's line; their maps point nowhere (defects 10, 18)


def test_one_pixel_layer_warns_at_the_callers_line_and_scores_a_miss() -> None:
    model = seeded(torchvision.models.resnet18(num_classes=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saliency = normgrad.NormGrad(model, "layer4")(_x())  # layer4 is 1x1 at 32x32
    (warning,) = caught
    assert "layer 'layer4'" in str(warning.message) and "resolution 1x1" in str(warning.message)
    assert warning.filename == __file__
    assert torch.equal(saliency, torch.zeros_like(saliency))
    corner = [torch.tensor([[0, 0, 3, 3]])] * 2
    assert metrics.pointing_game(saliency, corner, tolerance=15).tolist() == [0.0, 0.0]


# ---------------------------------------------------------------------------------------
# forward errors are diagnosed only when known (defects 11, 16)


class ExpandsChannels(nn.Module):
    """Adapts grey inputs to its RGB stem itself, and has a head of the wrong width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x.expand(-1, 3, -1, -1)).mean(dim=(2, 3)))


def test_a_model_that_adapts_channels_keeps_its_own_error() -> None:
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied") as info:
        normgrad.Gradient(ExpandsChannels())(torch.randn(2, 1, 32, 32), 0)
    assert not isinstance(info.value, ShapeError)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_input_dtype_other_than_the_models_says_what_to_do(dtype: torch.dtype) -> None:
    model = seeded(TinyCNN())
    with pytest.raises(ArgumentTypeError, match=rf"x: dtype {dtype}.*x\.to\(torch\.float32\)"):
        normgrad.NormGrad(model, LAYERS)(_x().to(dtype))


# ---------------------------------------------------------------------------------------
# activation checkpointing and TorchScript (defects 13, 17)


class Checkpointed(TinyCNN):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = cp.checkpoint(lambda t: self.relu2(self.conv2(t)), x, use_reentrant=self.reentrant)
        x = self.relu3(self.conv3(x))
        return self.fc(self.pool(self.dropout(x)).flatten(1))


def test_guided_methods_refuse_checkpointing_and_say_what_to_do() -> None:
    for reentrant in (False, True):
        model = seeded(Checkpointed(reentrant))
        for explainer in (normgrad.GuidedBackprop(model), normgrad.GuidedGradCAM(model, "conv3")):
            with pytest.raises(UnsupportedModelError, match="memory_efficient=False"):
                explainer(_x(), 0)


class ChangesReluOutput(TinyCNN):
    """A ReLU output changed in place later in forward: autograd cannot differentiate it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x.mul_(2)
        x = self.relu3(self.conv3(self.relu2(self.conv2(x))))
        return self.fc(self.pool(self.dropout(x)).flatten(1))


def test_a_relu_output_changed_in_place_is_refused_with_what_to_do() -> None:
    model = seeded(ChangesReluOutput())
    # the model cannot be differentiated at all: plain autograd fails in its backward
    x = _x().requires_grad_(True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        model(x)[:, 0].sum().backward()
    model.zero_grad(set_to_none=True)
    before = snapshot(model, _x())
    for explainer in (normgrad.GuidedBackprop(model), normgrad.GuidedGradCAM(model, "conv3")):
        with pytest.raises(UnsupportedModelError, match=r"in place after the ReLU.*h = h \+ y"):
            explainer(_x(), 0)
        assert_unchanged(before, snapshot(model, _x()))


def test_layers_inside_non_reentrant_checkpointing_are_exact() -> None:
    model = seeded(Checkpointed(reentrant=False))
    plain = copy.deepcopy(model)
    plain.forward = lambda x: TinyCNN.forward(plain, x)  # type: ignore[method-assign]
    for layers in (["conv2"], ["conv2", "conv3"]):
        torch.testing.assert_close(
            normgrad.NormGrad(model, layers)(_x(), 1), normgrad.NormGrad(plain, layers)(_x(), 1)
        )


def test_reentrant_checkpointing_is_named_not_blamed_on_the_layer() -> None:
    model = seeded(Checkpointed(reentrant=True))
    with pytest.raises(UnsupportedModelError, match="layer 'conv2' runs inside reentrant"):
        normgrad.GradCAM(model, "conv2")(_x(), 0)
    with pytest.raises(UnsupportedModelError, match="use_reentrant=False"):
        normgrad.Gradient(model)(_x(), 0)


def test_densenet_memory_efficient_guided_backprop_is_refused() -> None:
    model = torchvision.models.densenet121(num_classes=2, memory_efficient=True).eval()
    with pytest.raises(UnsupportedModelError, match="activation checkpointing"):
        normgrad.GuidedBackprop(model)(_x(1), 0)


def test_torchscript_is_refused_where_hooks_or_guided_relus_are_needed() -> None:
    model = seeded(TinyCNN())
    traced = torch.jit.trace(model, _x())
    with pytest.raises(UnsupportedModelError, match=r"TorchScript.*explain the eager model"):
        normgrad.NormGrad(traced, "conv2")(_x(), 0)
    with pytest.raises(UnsupportedModelError, match=r"TorchScript.*plain gradient"):
        normgrad.GuidedBackprop(traced)(_x(), 0)
    # no hook and no guided ReLU needed: the input gradient is exact
    torch.testing.assert_close(
        normgrad.Gradient(traced)(_x(), 0), normgrad.Gradient(model)(_x(), 0)
    )


# ---------------------------------------------------------------------------------------
# targets (defects 14, 18)


def test_detached_or_integer_scores_are_blamed_on_the_callable() -> None:
    explainer = normgrad.NormGrad(seeded(TinyCNN()), LAYERS)
    with pytest.raises(InvalidArgumentError, match="callable's scores are detached"):
        explainer(_x(), lambda o: o[:, 0].detach())
    with pytest.raises(ArgumentTypeError, match=r"returned scores of dtype torch\.int64"):
        explainer(_x(), lambda o: o.argmax(dim=1))


def test_numpy_targets_are_class_indices() -> None:
    explainer = normgrad.GradCAM(seeded(TinyCNN()), "conv3")
    expected = explainer(_x(), torch.tensor([3, 1]))
    for target in (np.array([3, 1]), np.array([3, 1], dtype=np.int32), [np.int64(3), 1]):
        assert torch.equal(explainer(_x(), target), expected)  # type: ignore[arg-type]
    assert torch.equal(explainer(_x(), np.int64(2)), explainer(_x(), 2))  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="integer array of class indices"):
        explainer(_x(), np.array([0.5, 1.0]))  # type: ignore[arg-type]


class Compiled(nn.Module):
    """How torch.compile wraps a model (its OptimizedModule keeps it as ``_orig_mod``),
    without the seconds torch.compile takes to import."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._orig_mod(x)  # type: ignore[no-any-return]


def test_compiled_model_layer_names_are_suggested() -> None:
    with pytest.raises(LayerError, match=r"did you mean '_orig_mod\.conv2'"):
        normgrad.NormGrad(Compiled(seeded(TinyCNN())), "conv2")


# ---------------------------------------------------------------------------------------
# constructor arguments (defect 15)


def test_perturbation_arguments_are_checked_in_the_constructor() -> None:
    model = seeded(TinyCNN())
    with pytest.raises(InvalidArgumentError, match="baseline: expected a finite number, got nan"):
        normgrad.IntegratedGradients(model, baseline=float("nan"))
    with pytest.raises(InvalidArgumentError, match=r"baseline: expected finite values, got 1"):
        normgrad.IntegratedGradients(model, baseline=torch.tensor([0.0, float("inf")]))
    with pytest.raises(InvalidArgumentError, match="noise_level: expected a finite number"):
        normgrad.SmoothGrad(normgrad.Gradient(model), noise_level=float("inf"))
    with pytest.raises(ArgumentTypeError, match="seed: expected an int >= 0, got str 'a'"):
        normgrad.SmoothGrad(normgrad.Gradient(model), seed="a")  # type: ignore[arg-type]
