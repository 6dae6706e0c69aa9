"""The attention blocks normgrad recognises, and what their hooks read in a forward pass.

Three kinds of self-attention module are recognised, whatever attention kernel they run
(fused ``scaled_dot_product_attention``, an eager softmax, ``need_weights=False``): the
attention probabilities are never read from the model, they are recomputed from the
queries and keys its hooks see, ``A = softmax(q k^T * scale)`` per head. And the tensor
the score is differentiated against is the attention output before its projection,
``O = A V`` with the heads side by side, where the module hands it to a submodule:

- ``torch.nn.MultiheadAttention`` (torchvision's ``VisionTransformer``,
  ``nn.TransformerEncoderLayer``): q, k, v from its input and ``in_proj_weight``; ``O`` is
  not a tensor of the forward pass (``out_proj`` is applied inside
  ``F.multi_head_attention_forward``), so the gradient is read at its output
  ``Y = O W_out^T + b`` and ``dS/dO = (dS/dY) W_out``;
- timm's ``Attention`` (ViT, DeiT, register tokens): q and k from ``q_norm`` and
  ``k_norm``'s outputs, v from ``qkv``'s output, ``O`` at ``norm``'s input;
- Hugging Face transformers 5 ViT, DeiT and DINOv2 attention (``q_proj``, ``k_proj``,
  ``v_proj``, ``o_proj``): q, k, v from the three projections' outputs, ``O`` at
  ``o_proj``'s input.

Hooks are registered through a [`HookSet`][normgrad._model.hooks.HookSet] and only read:
none returns a value, so the model computes exactly what it computes without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import UnsupportedModelError
from .hooks import HookSet


@dataclass
class Call:
    """What one attention block gave in one call; ``q``, ``k``, ``v`` ``(N, H, T, d)``."""

    q: torch.Tensor | None = None
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    output: torch.Tensor | None = None
    """Where the score's gradient is read: ``O`` ``(N, T, H d)``, or the
    ``MultiheadAttention``'s output ``Y`` (``(T, N, D)`` unless ``batch_first``)."""
    out_weight: torch.Tensor | None = None
    """``W_out`` where ``output`` is ``Y = O W_out^T + b`` (``MultiheadAttention``)."""
    out_bias: torch.Tensor | None = None
    """``b`` there, if any."""
    token_first: bool = False
    """Whether ``output`` is ``(T, N, D)``."""

    def probabilities(self, scale: float | None) -> torch.Tensor:
        """``softmax(q k^T * scale)`` ``(N, H, T, T)`` (``scale`` ``None``:
        ``1 / sqrt(d)``), in float32 at least."""
        assert self.q is not None and self.k is not None
        dtype = torch.promote_types(self.q.dtype, torch.float32)
        scores = self.q.to(dtype) @ self.k.to(dtype).transpose(-2, -1)
        return (scores * (scale or self.q.shape[-1] ** -0.5)).softmax(-1)

    def mismatch(self, attention: torch.Tensor) -> torch.Tensor:
        """The largest difference between ``output`` and its value recomputed from
        ``attention`` ``(N, H, T, T)`` and ``v``, relative to ``output``'s largest
        magnitude (0-d): near 0 when the block computes ``softmax(q k^T * scale) v``."""
        assert self.v is not None and self.output is not None
        n, h, t, d = self.v.shape
        o = (attention @ self.v.to(attention.dtype)).transpose(1, 2).reshape(n, t, h * d)
        if self.out_weight is not None:
            bias = None if self.out_bias is None else self.out_bias.detach().to(o.dtype)
            o = F.linear(o, self.out_weight.detach().to(o.dtype), bias)
        seen = self.output.detach().to(o.dtype)
        seen = seen.transpose(0, 1) if self.token_first else seen
        return (o - seen).abs().amax() / seen.abs().amax().clamp_min(torch.finfo(o.dtype).tiny)

    def tolerance(self) -> float:
        """The largest ``mismatch`` rounding explains: the model's kernels run in the
        dtype of ``v``, the recomputation in float32 at least."""
        assert self.v is not None
        return {torch.float64: 1e-6, torch.float32: 1e-3}.get(self.v.dtype, 5e-2)

    def attention_gradient(self, gradient: torch.Tensor | None) -> torch.Tensor:
        """``dS/dA = (dS/dO_h) V_h^T`` per head, from the gradient at ``output``."""
        assert self.v is not None
        n, h, t, d = self.v.shape
        dtype = torch.promote_types(self.v.dtype, torch.float32)
        if gradient is None:  # the score does not depend on this block
            return torch.zeros(n, h, t, t, dtype=dtype, device=self.v.device)
        grad = gradient.to(dtype)
        if self.token_first:
            grad = grad.transpose(0, 1)
        if self.out_weight is not None:
            grad = grad @ self.out_weight.detach().to(dtype)
        rows = grad.shape[0]  # N, or N * K for K classes per sample (sample-major)
        values = self.v.to(dtype).repeat_interleave(rows // n, 0) if rows != n else self.v
        per_head = grad.reshape(rows, t, h, d).transpose(1, 2)
        return per_head @ values.to(dtype).transpose(-2, -1)


def _heads(t: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(N, T, H d)`` as ``(N, H, T, d)``, detached."""
    n, tokens, width = t.shape
    return t.detach().reshape(n, tokens, width // head_dim, head_dim).transpose(1, 2)


# the Hugging Face attention classes that compute softmax(q k^T * scaling) v over their
# projections and nothing else (no rotary embedding, no relative position bias)
_HUGGING_FACE = (
    "ViTAttention",
    "DeiTAttention",
    "Dinov2Attention",
    "Dinov2WithRegistersAttention",
)


def _is_class(module: nn.Module, package: str, names: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of the classes ``names`` of ``package`` (by name: the
    package is not imported). Other attention classes of the same shape may rotate their
    queries and keys, or add a bias, after the hooked submodules: they are not read."""
    kind = type(module)
    return kind.__name__ in names and kind.__module__.startswith(package)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


@dataclass
class Site:
    """A recognised attention module of the model: its name and the calls it made."""

    name: str
    module: nn.Module
    calls: list[Call] = field(default_factory=list)

    @staticmethod
    def matches(module: nn.Module) -> bool:
        raise NotImplementedError

    def scale(self) -> float | None:
        """The softmax's scale the module states, or ``None``: ``1 / sqrt(d)``."""
        return None

    def refusal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """Why this call cannot be read (a mask, cross-attention), or ``None``."""
        return None

    def watch(self, hooks: HookSet, order: list[Site]) -> None:
        """Hooks that record each call in ``calls`` and the order of calls in ``order``."""

        def begin(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            why = self.refusal(args, kwargs)
            if why is not None:
                raise UnsupportedModelError(
                    f"model: the attention block {self.name!r} ({type(module).__name__}) "
                    f"was called with {why}; normgrad's attention methods read plain "
                    "self-attention over all tokens (a vision transformer's blocks)"
                )
            self.calls.append(Call())
            order.append(self)

        hooks.add(self.module.register_forward_pre_hook(begin, with_kwargs=True))
        self._watch_parts(hooks)

    def _watch_parts(self, hooks: HookSet) -> None:
        raise NotImplementedError

    def _record(self, module: nn.Module, what: str, read: Any, pre: bool = False) -> Any:
        """A hook on ``module`` setting field ``what`` of the current call to ``read``
        of the module's input (``pre``) or output."""

        def hook(_: nn.Module, args: tuple[Any, ...], *output: Any) -> None:
            if self.calls:
                setattr(self.calls[-1], what, read(args[0] if pre else output[0]))

        if pre:
            return module.register_forward_pre_hook(hook)
        return module.register_forward_hook(hook)


class MultiheadSite(Site):
    """``torch.nn.MultiheadAttention`` used as self-attention without masks."""

    @staticmethod
    def matches(module: nn.Module) -> bool:
        return isinstance(module, nn.MultiheadAttention)

    def refusal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        query = _argument(args, kwargs, 0, "query")
        key, value = _argument(args, kwargs, 1, "key"), _argument(args, kwargs, 2, "value")
        if not (query is key is value):
            return "a key or value other than its query (cross-attention)"
        masks = [_argument(args, kwargs, 3, "key_padding_mask")]
        masks += [kwargs.get("attn_mask"), kwargs.get("is_causal")]
        if any(m is not None and m is not False for m in masks):
            return "an attention mask"
        return None

    def _watch_parts(self, hooks: HookSet) -> None:
        mha = self.module
        assert isinstance(mha, nn.MultiheadAttention)
        if mha.bias_k is not None or mha.add_zero_attn:
            raise UnsupportedModelError(
                f"model: the attention block {self.name!r} adds key/value biases or a zero "
                "attention (add_bias_kv, add_zero_attn): its tokens are not the input's; "
                "normgrad's attention methods do not read it"
            )

        def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            if not self.calls:
                return
            x = _argument(args, kwargs, 0, "query").detach()
            x = x if mha.batch_first else x.transpose(0, 1)
            if mha.in_proj_weight is not None:
                weight = mha.in_proj_weight
            else:
                parts = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
                weight = torch.cat(parts)
            bias = mha.in_proj_bias
            qkv = F.linear(x, weight.detach(), None if bias is None else bias.detach())
            q, k, v = (_heads(t, mha.head_dim) for t in qkv.chunk(3, dim=-1))
            call = self.calls[-1]
            call.q, call.k, call.v = q, k, v
            call.output, call.out_weight = out[0], mha.out_proj.weight
            call.out_bias = mha.out_proj.bias
            call.token_first = not mha.batch_first

        hooks.add(mha.register_forward_hook(hook, with_kwargs=True))


class TimmSite(Site):
    """timm's ``Attention`` (``vision_transformer.Attention``: ViT, DeiT, with or without
    register tokens)."""

    @staticmethod
    def matches(module: nn.Module) -> bool:
        parts = ("qkv", "q_norm", "k_norm", "norm", "proj")
        return (
            _is_class(module, "timm.", ("Attention",))
            and all(isinstance(getattr(module, p, None), nn.Module) for p in parts)
            and isinstance(module.qkv, nn.Linear)
            and isinstance(getattr(module, "num_heads", None), int)
            and isinstance(getattr(module, "head_dim", None), int)
        )

    def refusal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        mask = _argument(args, kwargs, 1, "attn_mask")
        causal = _argument(args, kwargs, 2, "is_causal")
        return "an attention mask" if mask is not None or causal else None

    def _watch_parts(self, hooks: HookSet) -> None:
        m: Any = self.module
        heads, width = m.num_heads, m.head_dim

        def values(out: torch.Tensor) -> torch.Tensor:
            n, t, _ = out.shape
            return out.detach().reshape(n, t, 3, heads, width)[:, :, 2].transpose(1, 2)

        hooks.add(self._record(m.q_norm, "q", torch.Tensor.detach))
        hooks.add(self._record(m.k_norm, "k", torch.Tensor.detach))
        hooks.add(self._record(m.qkv, "v", values))
        hooks.add(self._record(m.norm, "output", lambda o: o, pre=True))

    def scale(self) -> float | None:
        return _number(getattr(self.module, "scale", None))


class HuggingFaceSite(Site):
    """Hugging Face transformers 5 ViT-style attention (``q_proj``, ``k_proj``, ``v_proj``,
    ``o_proj``, ``head_dim``, ``scaling``): ViT, DeiT, DINOv2 (with registers)."""

    @staticmethod
    def matches(module: nn.Module) -> bool:
        parts = ("q_proj", "k_proj", "v_proj", "o_proj")
        return (
            _is_class(module, "transformers.", _HUGGING_FACE)
            and all(isinstance(getattr(module, p, None), nn.Linear) for p in parts)
            and isinstance(getattr(module, "head_dim", None), int)
        )

    def refusal(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        mask = _argument(args, kwargs, 1, "attention_mask")
        return "an attention mask" if mask is not None else None

    def scale(self) -> float | None:
        return _number(getattr(self.module, "scaling", None))

    def _watch_parts(self, hooks: HookSet) -> None:
        m: Any = self.module
        width = m.head_dim
        for part, what in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
            hooks.add(self._record(getattr(m, part), what, lambda o: _heads(o, width)))
        hooks.add(self._record(m.o_proj, "output", lambda o: o, pre=True))


KINDS: tuple[type[Site], ...] = (MultiheadSite, TimmSite, HuggingFaceSite)


def find_sites(model: nn.Module) -> list[Site]:
    """Every attention module of ``model`` that normgrad recognises, by name."""
    return [
        kind(name, module)
        for name, module in model.named_modules()
        for kind in KINDS
        if kind.matches(module)
    ]
