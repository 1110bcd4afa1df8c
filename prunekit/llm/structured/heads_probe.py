"""Probe hooks that keep normalisations from hiding which channels feed which unit.

A norm over a whole projection (OLMo-2's ``q_norm`` / ``k_norm`` over all heads,
BitNet's and Dory's sub-norms before ``o_proj`` / ``down_proj``) makes every output
channel depend on every input channel through its statistic, so the probe's gradients
would say each head reads every row. During the probe only,
:func:`diagonal_norm_hooks` replaces each norm's output ``y = f(x)`` by a value-equal
``y_d + (x - x_d) * (y_d / x_d)`` where ``x_d`` is ``x`` detached and ``y_d = f(x_d)``:
the forward values are unchanged, the gradient to ``x`` is diagonal (channel to same
channel) and the gradient to the norm's own weight stays. The hooks are removed with
the probe's others.

Example:
    >>> import torch
    >>> from torch import nn
    >>> norm = nn.Sequential(nn.LayerNorm(4))
    >>> handles = diagonal_norm_hooks(norm)
    >>> x = torch.randn(1, 4, requires_grad=True)
    >>> g = torch.autograd.grad(norm(x)[0, 0], x)[0]
    >>> [bool(v != 0) for v in g[0]]
    [True, False, False, False]
    >>> for h in handles: h.remove()
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import is_prunable_linear

_NORM = re.compile(r"norm", re.IGNORECASE)


def _diagonal(module: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> Any:
    if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
        return None
    x = args[0]
    if out.shape != x.shape or not x.is_floating_point() or not torch.is_grad_enabled():
        return None
    xd = x.detach()
    yd = module.forward(xd, *args[1:], **kwargs)
    ratio = torch.where(xd != 0, yd.detach() / torch.where(xd != 0, xd, torch.ones_like(xd)), torch.zeros_like(xd))
    return yd + (x - xd) * ratio


def diagonal_norm_hooks(block: nn.Module) -> list[Any]:
    """Forward hooks making every leaf normalisation module of ``block`` channel-diagonal."""
    handles = []
    for _name, module in block.named_modules():
        if is_prunable_linear(module) or not _NORM.search(type(module).__name__) or next(module.children(), None):
            continue
        handles.append(module.register_forward_hook(_diagonal, with_kwargs=True))
    return handles
