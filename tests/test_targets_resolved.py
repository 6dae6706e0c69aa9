"""The target is resolved once per call, where the call begins, and handed on resolved.

``resolve_target`` (``_model/targets.py``) is the one resolver: an explainer's ``explain``
and ``explain_shared`` call it at their entry; the passes (``run_passes``, ``capture``)
take only the value it makes, so a second resolution cannot creep back in unseen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import normgrad
from normgrad._explainers.base import PassNeeds, run_passes
from normgrad._model.capture import capture
from normgrad._model.targets import ClassTarget, ScoreTarget, resolve_target

from .explainers import EXPLAINERS
from .models import TinyCNN

LAYERS = ["relu1", "relu3"]


def _setup() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TinyCNN().eval(), torch.randn(3, 3, 16, 16)


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every call of ``resolve_target``, wherever a module of normgrad holds it."""
    seen: list[object] = []

    def counted(target: Any) -> Any:
        seen.append(target)
        return resolve_target(target)

    for name, module in list(sys.modules.items()):
        if name.startswith("normgrad") and getattr(module, "resolve_target", None) is (
            resolve_target
        ):
            monkeypatch.setattr(module, "resolve_target", counted)
    yield seen


def _score(output: torch.Tensor) -> torch.Tensor:
    return output[:, 2] - output[:, 0]


TARGETS: dict[str, Callable[[], Any]] = {
    "None": lambda: None,
    "int": lambda: 1,
    "tensor": lambda: torch.tensor([0, 4, 2]),
    "list": lambda: [3, 1, 0],
    "callable": lambda: _score,
}


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("name", [*EXPLAINERS, "center"])
def test_one_explainer_call_resolves_its_target_once(
    name: str, kind: str, resolutions: list[object]
) -> None:
    model, x = _setup()
    explainer = normgrad.CenterMap(model) if name == "center" else EXPLAINERS[name](model, LAYERS)
    target = TARGETS[kind]()
    result = explainer.explain(x, target)
    assert len(resolutions) == 1 and resolutions[0] is target
    assert result.saliency.shape == (3, 1, 16, 16)


@pytest.mark.parametrize("kind", TARGETS)
def test_explain_shared_resolves_the_target_once_for_all(
    kind: str, resolutions: list[object]
) -> None:
    model, x = _setup()
    methods = [make(model, LAYERS) for make in EXPLAINERS.values()]
    methods.append(normgrad.CenterMap(model))
    target = TARGETS[kind]()
    results = normgrad.explain_shared(methods, x, target)
    assert len(resolutions) == 1 and resolutions[0] is target
    assert len(results) == len(methods)


@pytest.mark.parametrize("kind", TARGETS)
def test_the_passes_take_only_a_resolved_target(kind: str) -> None:
    """An unresolved target is a caller's bug: the passes refuse it instead of resolving it
    a second time."""
    model, x = _setup()
    raw = TARGETS[kind]()
    layer = ("relu3", model.relu3)
    needs = [PassNeeds(layers=(layer,), layouts=(None,))]
    with pytest.raises(TypeError, match="run_passes: expected a target resolved by resolve"):
        run_passes(model, x, needs, raw)
    with pytest.raises(TypeError, match="capture: expected a target resolved by resolve"):
        capture(model, x, [layer], raw)
    # and a resolved value is not a target to resolve again
    with pytest.raises(normgrad.ArgumentTypeError, match="target: expected None, an int"):
        resolve_target(ClassTarget())


def test_the_passes_explain_what_the_resolved_target_says() -> None:
    model, x = _setup()
    layer = ("relu3", model.relu3)
    with torch.no_grad():
        logits = model(x)
    for resolved, classes in [
        (resolve_target(None), logits.argmax(1)),
        (resolve_target(4), torch.full((3,), 4)),
        (resolve_target(torch.tensor([2, 0, 1])), torch.tensor([2, 0, 1])),
    ]:
        assert isinstance(resolved, ClassTarget)
        result = capture(model, x, [layer], resolved)
        assert result.classes is not None and result.classes.tolist() == classes.tolist()
    scored = resolve_target(_score)
    assert isinstance(scored, ScoreTarget)
    assert capture(model, x, [layer], scored).classes is None


@pytest.mark.parametrize("name", [*EXPLAINERS, "center", "shared"])
def test_a_wrong_target_is_refused_with_the_same_message_everywhere(name: str) -> None:
    model, x = _setup()
    if name == "shared":
        methods = [make(model, LAYERS) for make in EXPLAINERS.values()]

        def call(target: Any) -> object:
            return normgrad.explain_shared(methods, x, target)
    else:
        explainer = (
            normgrad.CenterMap(model) if name == "center" else EXPLAINERS[name](model, LAYERS)
        )

        def call(target: Any) -> object:
            return explainer.explain(x, target)

    with pytest.raises(normgrad.ArgumentTypeError, match=r"target: expected None, an int.*got"):
        call(1.5)
    with pytest.raises(normgrad.ArgumentTypeError, match="integer tensor of class indices"):
        call(torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(normgrad.InvalidArgumentError, match="class index >= 0, got -1"):
        call(-1)


class _ByContract(normgrad.Explainer):
    """An explainer written to the public contract alone: it implements ``explain``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.seen: list[object] = []

    def explain(self, x: torch.Tensor, target: normgrad.Target = None) -> normgrad.Explanation:
        self.seen.append(target)
        return normgrad.Gradient(self.model).explain(x, target)


@pytest.mark.parametrize("kind", TARGETS)
def test_an_explainer_written_to_the_public_contract_is_handed_its_argument(kind: str) -> None:
    """Inside SmoothGrad and explain_shared, an explainer that implements ``explain`` only
    gets the target as an argument (not the resolved value) and gives what it gives alone."""
    model, x = _setup()
    target = TARGETS[kind]()
    custom = _ByContract(model)
    (shared,) = normgrad.explain_shared([custom], x, target)
    alone = normgrad.Gradient(model).explain(x, target)
    torch.testing.assert_close(shared.saliency, alone.saliency, rtol=0, atol=0)
    smooth = normgrad.SmoothGrad(custom, n_samples=2, batch_size=3)(x, target)
    plain = normgrad.SmoothGrad(normgrad.Gradient(model), n_samples=2, batch_size=3)(x, target)
    torch.testing.assert_close(smooth, plain, rtol=0, atol=0)
    assert not any(isinstance(t, (ClassTarget, ScoreTarget)) for t in custom.seen)
