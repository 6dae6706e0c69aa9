"""The protocol every normgrad explainer follows."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._deferred import deferred_checks
from .._errors import InvalidArgumentError, warn
from .._model.capture import capture
from .._model.layers import check_model
from .._model.layouts import Layout
from .._model.targets import (
    ResolvedTarget,
    Target,
    require_resolved,
    resolve_target,
)
from ..functional import layer_maps_to_saliency, upsample


@dataclass(frozen=True)
class Explanation:
    """The result of explaining a batch.

    With a target of ``K`` classes per sample ``(N, K)`` every map has a class axis in
    place of its channel axis of one (``saliency`` ``(N, K, *spatial)``, ``classes``
    ``(N, K)``, ``attribution`` ``(N, K, C, *spatial)``), each class's maps equal to an
    explanation of that class alone; a warning about a sample then names the pair
    (sample ``n``, column ``k``) by its row ``n * K + k``.

    Attributes:
        saliency: float tensor ``(N, 1, *spatial)`` at the input's size, values in ``[0, 1]``.
        raw: the map before min-max normalisation, same shape, or ``None`` where the method
            has no single raw map (multi-layer NormGrad fuses normalized maps).
        classes: the class index explained for each sample ``(N,)``, or ``None`` when the
            target was a callable.
        layer_maps: per-layer maps, upsampled and normalized to ``[0, 1]`` (unfused), by
            layer name; empty for methods without layers.
        raw_layer_maps: per-layer raw maps at each layer's own resolution, by layer name
            (NormGrad's map, Grad-CAM's class activation map after its ReLU).
        attribution: the signed attribution in input space before the channel reduction,
            ``(N, C, *spatial)``, for the methods that have one (the gradient, x ⊙ the
            gradient, guided gradients, Integrated Gradients); ``None`` otherwise.
    """

    saliency: torch.Tensor
    raw: torch.Tensor | None
    classes: torch.Tensor | None
    layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    raw_layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    attribution: torch.Tensor | None = None


@dataclass(frozen=True)
class PassNeeds:
    """What an explainer reads from the pass that explainers of one model share.

    One forward pass records the activations of the hooked layers; the plain backward
    gives their gradients and the gradient with respect to the input; the guided backward
    (ReLUs guided) gives the guided gradient with respect to the input.
    """

    layers: tuple[tuple[str, nn.Module], ...] = ()
    layouts: tuple[Layout, ...] = ()
    input_gradient: bool = False
    guided: bool = False


@dataclass
class Passes:
    """What the shared passes produced for one batch (tensors detached)."""

    classes: torch.Tensor | None
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """Activation and gradient ``(N, C, *spatial)`` of each hooked layer, by name."""
    input_gradient: torch.Tensor | None
    guided_gradient: torch.Tensor | None
    memo: dict[Hashable, torch.Tensor] = field(default_factory=dict)
    """Maps derived from the passes, computed once for all the explainers that read them."""
    per_class: int = 0
    """``K`` for ``K`` classes per sample: every tensor then holds ``N * K`` rows,
    sample-major (see ``assemble``)."""

    def derived(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()``, computed once per ``key`` for this batch."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]


def run_passes(
    model: nn.Module,
    x: torch.Tensor,
    needs: Sequence[PassNeeds],
    target: ResolvedTarget,
) -> Passes:
    """One forward pass of ``model`` on ``x`` and at most two backward passes, serving
    every need in ``needs``.

    The forward pass captures the union of the layers; the plain backward gives their
    gradients (and the input's, if any explainer reads it); the guided backward, if any
    explainer needs it, gives the guided input gradient, from the same forward pass and so
    for the same score and classes. ``target`` was resolved where the call began.
    """
    resolved = require_resolved(target, "run_passes")
    layers: dict[str, nn.Module] = {}
    layouts: dict[str, Layout] = {}
    for need in needs:
        for (name, module), layout in zip(need.layers, need.layouts):
            layers.setdefault(name, module)
            if layouts.setdefault(name, layout) != layout:
                raise InvalidArgumentError(
                    f"explainers: layer {name!r} is given two layouts, {layouts[name]!r} and "
                    f"{layout!r}; state one"
                )
    input_gradient = any(need.input_gradient for need in needs)
    guided = any(need.guided for need in needs)
    passes = Passes(None, {}, None, None)
    if not (layers or input_gradient or guided):
        return passes
    result = capture(
        model,
        x,
        list(layers.items()),
        resolved,
        layouts=list(layouts.values()),
        input_gradient=input_gradient,
        guided=guided,
    )
    if guided and result.guided_relus == 0:
        name = type(model).__name__
        with deferred_checks() as checks:  # said after the pass's checks, as they are read
            checks.add(
                None,
                lambda _: warn(
                    f"GuidedBackprop: no ReLU ran in the forward pass of {name}; "
                    "the result is the plain gradient (other activations are not guided)"
                ),
            )
    passes.classes, passes.per_class = result.classes, result.per_class
    k = result.per_class  # K classes per sample: each activation serves K gradients
    activations = [a.repeat_interleave(k, 0) if k else a for a in result.activations]
    passes.layers = dict(zip(layers, zip(activations, result.gradients)))
    passes.input_gradient = result.input_gradient
    passes.guided_gradient = result.guided_gradient
    return passes


class Explainer:
    """Base class of the saliency methods: ``explainer(x, target) -> (N, 1, *spatial)``.

    Subclasses implement [`explain`][normgrad.Explainer.explain]; calling the explainer returns
    ``explain(x, target).saliency``. Every explainer runs the model in eval mode and
    leaves it exactly as it found it (hooks removed, training flags restored, no
    ``param.grad`` written), also when it raises.

    A method made of what the shared passes give (layer activations and gradients, the
    input gradient, the guided input gradient) says so with ``_needs`` and builds its
    result in ``_assemble``; [`explain_shared`][normgrad.explain_shared] then serves it and other
    explainers of the same model from one forward pass, a plain and at most one guided
    backward pass. A method with passes of its own implements ``_explain``, which gets the
    target resolved once, where the call began (``explain`` resolves it).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = check_model(model)

    def explain(self, x: torch.Tensor, target: Target = None) -> Explanation:
        """Explain ``x`` ``(N, C, *spatial)`` for ``target``; see
        [`Explanation`][normgrad.Explanation]."""
        return self._explain(x, resolve_target(target))  # the call's one resolution

    def _explain(self, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
        """Explain ``x`` for a target resolved where the call began. By default from the
        shared passes (``_needs`` and ``_assemble``); a method with passes of its own
        overrides this."""
        needs = self._needs()
        if needs is None:
            raise NotImplementedError(f"{type(self).__name__} must implement explain")
        self._check(x)
        with deferred_checks():  # every check of the call read once, at its end
            return assemble(self, x, run_passes(self.model, x, [needs], target))

    def _needs(self) -> PassNeeds | None:
        """What this method reads from the shared passes; ``None``: it runs its own."""
        return None

    def _check(self, x: torch.Tensor) -> None:
        """Checks of ``x`` specific to this method, before any pass is spent on it."""

    def _assemble(self, x: torch.Tensor, passes: Passes) -> Explanation:
        """This method's explanation of ``x`` from the shared passes."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Saliency maps ``(N, 1, *spatial)`` with values in ``[0, 1]``."""
        return self.explain(x, target).saliency

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


def assemble(explainer: Explainer, x: torch.Tensor, passes: Passes) -> Explanation:
    """``explainer``'s explanation of ``x`` from ``passes``; for ``K`` classes per sample,
    assembled as for a batch of ``N * K`` samples and given its class axis."""
    if not passes.per_class:
        return explainer._assemble(x, passes)
    flat = explainer._assemble(x.repeat_interleave(passes.per_class, 0), passes)
    return per_class(flat, passes.per_class)


def per_class(explanation: Explanation, k: int) -> Explanation:
    """An explanation of ``N * K`` rows (sample-major) with a class axis: maps
    ``(N, K, *spatial)``, ``attribution`` ``(N, K, C, *spatial)``; ``classes`` as it is."""

    def maps(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, k, *t.shape[2:])

    def by_name(d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: maps(t) for name, t in d.items()}

    a = explanation.attribution
    return Explanation(
        saliency=maps(explanation.saliency),
        raw=None if explanation.raw is None else maps(explanation.raw),
        classes=explanation.classes,
        layer_maps=by_name(explanation.layer_maps),
        raw_layer_maps=by_name(explanation.raw_layer_maps),
        attribution=None if a is None else a.reshape(-1, k, *a.shape[1:]),
    )


def explain_resolved(explainer: Explainer, x: torch.Tensor, target: ResolvedTarget) -> Explanation:
    """``explainer``'s explanation of ``x`` for a resolved target, inside a call that
    resolved it (``explain_shared``, SmoothGrad around an explainer). An explainer written
    to the public contract alone (it implements ``explain``, not ``_explain`` or
    ``_needs``) is handed the target as its argument."""
    if type(explainer)._explain is Explainer._explain and explainer._needs() is None:
        return explainer.explain(x, target.argument)
    return explainer._explain(x, target)


def build_explanation(
    size: Sequence[int],
    classes: torch.Tensor | None,
    *,
    layers: Mapping[str, torch.Tensor] | None = None,
    raw: torch.Tensor | None = None,
    attribution: torch.Tensor | None = None,
) -> Explanation:
    """The one way an [`Explanation`][normgrad.Explanation] is made, from raw (non-negative) maps.

    Args:
        size: the input's spatial size.
        classes: the classes explained ``(N,)``, or ``None``.
        layers: raw maps ``(N, 1, *spatial_j)`` at each layer's resolution, by name.
        raw: the method's raw map ``(N, 1, *size)`` in input space. When it is left out,
            the saliency is made from the layer maps: each upsampled and min-max normalized,
            several fused by their geometric mean; ``raw`` is then the single layer's
            upsampled map (``None`` for several layers).
        attribution: the signed attribution ``(N, C, *size)``, if any.

    A map that is constant for a sample normalises to zeros (see
    [`functional.layer_maps_to_saliency`][normgrad.functional.layer_maps_to_saliency]), with a
    warning naming the layer and its resolution: it carries no spatial information (a 1x1 map, a KxK
    VIL whose patch covers the whole map, a layer the score does not reach spatially)."""
    layer_raws = dict(layers or {})
    fused, normalized, informative = (
        layer_maps_to_saliency(list(layer_raws.values()), size) if layer_raws else (None, [], [])
    )
    with deferred_checks() as checks:  # read with the call's other checks
        for (name, layer_raw), kept in zip(layer_raws.items(), informative):
            checks.add(kept, _constant_action(name, layer_raw, len(layer_raws)))
    if raw is not None:
        saliency = layer_maps_to_saliency([raw], size)[0]
    elif fused is not None:
        saliency = fused
        if len(layer_raws) == 1:
            raw = upsample(next(iter(layer_raws.values())), size)
    else:
        raise ValueError("build_explanation: expected layer maps or a raw map")
    return Explanation(
        saliency=saliency,
        raw=raw,
        classes=classes,
        layer_maps=dict(zip(layer_raws, normalized)),
        raw_layer_maps=layer_raws,
        attribution=attribution,
    )


def _constant_action(name: str, raw: torch.Tensor, count: int) -> Callable[[list[float]], None]:
    def action(kept: list[float]) -> None:
        samples = [i for i, k in enumerate(kept) if not k]
        if samples:
            _warn_constant(name, raw, samples, count)

    return action


def _warn_constant(name: str, raw: torch.Tensor, samples: list[int], count: int) -> None:
    resolution = "x".join(str(s) for s in raw.shape[2:])
    effect = (
        "the saliency map of those samples is all zero (no point to choose: the Pointing "
        "Game scores it a miss)"
        if count == 1
        else "it is left out of the geometric mean of those samples"
    )
    warn(
        f"layer {name!r} gives a constant map at its resolution {resolution} for sample(s) "
        f"{samples}: it carries no spatial information, and {effect}. Usual causes: a map "
        "of one or very few pixels (choose an earlier layer or a larger input), a KxK VIL "
        "whose patch covers the whole map (a smaller VIL), a Grad-CAM map negative "
        "everywhere before its ReLU, or no gradient reaching the layer (a zero head: "
        "said in a warning of its own when so)"
    )
