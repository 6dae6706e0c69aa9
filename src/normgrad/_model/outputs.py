"""What normgrad reads from a model's output and from a captured layer's output.

A model's output is read as its logits by one rule, in this order:

1. a tensor is the logits;
2. an output with a ``logits`` attribute (a Hugging Face ``ModelOutput``) or a mapping
   with a ``"logits"`` key: that value;
3. a tuple or list: its first element (a Hugging Face model called with
   ``return_dict=False``, a model returning ``(logits, features)``).

Any other output is handed back as it is, for the caller to refuse naming ``target``
(a callable target reads any output: it always receives the output unchanged).

A captured layer that returns a tuple whose first element is a tensor (Hugging Face blocks
return ``(hidden_states, attention_weights)``) is read through that first element.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .._errors import ArgumentTypeError


def logits_of(output: Any) -> Any:
    """The logits of a model's ``output`` by the rule above; ``output`` itself when the
    rule does not apply (a tensor, or an output it cannot read)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        return output.get("logits", output)
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return output


def read_logits(output: Any) -> torch.Tensor:
    """The logits of a model's ``output`` by the rule above; an output it cannot read
    raises [`ArgumentTypeError`][normgrad.ArgumentTypeError] naming ``target``."""
    logits = logits_of(output)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        what = f"a {type(output).__name__} with keys {list(output)[:8]} and no 'logits'"
    elif isinstance(output, (tuple, list)):
        what = f"a {type(output).__name__} whose first element is not a tensor"
    else:
        what = f"an output of type {type(output).__name__}"
    raise ArgumentTypeError(
        f"target: the model returned {what}; with target=None or class indices normgrad "
        "reads the logits from a tensor, a 'logits' attribute or key, or a tuple's first "
        "element; pass target=callable(output) -> scores (N,) to explain this output"
    )


def layer_tensor(output: Any) -> Any:
    """A captured layer's tensor: ``output`` itself, or the first element of a tuple
    whose first element is a tensor; anything else is returned as it is (and refused
    by the capture)."""
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return output


def with_layer_tensor(output: Any, tensor: torch.Tensor) -> Any:
    """``output`` with its tensor (see ``layer_tensor``) replaced by ``tensor``, of the
    same type (a named tuple stays one)."""
    if isinstance(output, torch.Tensor):
        return tensor
    rest = tuple(output[1:])
    if hasattr(output, "_fields"):  # a named tuple
        return type(output)(tensor, *rest)
    return type(output)((tensor, *rest))
