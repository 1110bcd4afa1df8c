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

A parameter that is exactly zero everywhere (ZAYA's per-key-head ``qk_norm.temp``, a
zero-initialised gate or scale) can hide a whole path: with the key scale at zero the keys
are zero and neither the query nor the key rows reach any head. :func:`nonzero_parameters`
gives every such parameter of a block deterministic nonzero values for the probe and its
analysis (the gradients are read while the values are live) and restores them exactly after,
also when the probe fails. Only all-zero parameters change; the structure found is the
dependency structure of the model's code, not of its initial values.

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
from collections.abc import Iterator
from contextlib import contextmanager
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


PROBE_LOW, PROBE_HIGH = 0.25, 0.75  # neither 0 nor 1: ``x`` and ``1 - x`` both stay nonzero


def _all_zero(p: torch.Tensor) -> bool:
    return p.is_floating_point() and p.numel() > 0 and p.device.type != "meta" and not bool(p.detach().any())


@contextmanager
def nonzero_parameters(block: nn.Module) -> Iterator[list[str]]:
    """Give every all-zero floating parameter of ``block`` nonzero values for the ``with`` body.

    The values are drawn uniformly from ``[PROBE_LOW, PROBE_HIGH)`` with a fixed seed (the
    same on every call), written in place (the tensors keep their identity, so gradients to
    them stay readable) and restored bit for bit on exit, whatever happens inside. Yields
    the names of the parameters changed.

    Example:
        >>> gate = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = gate.bias.zero_()
        >>> with nonzero_parameters(gate) as changed:
        ...     live = bool(gate.bias.all())
        >>> changed, live, bool(gate.bias.any())
        (['bias'], True, False)
    """
    gen = torch.Generator().manual_seed(0)
    saved: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    names: list[str] = []
    try:
        with torch.no_grad():
            for name, p in block.named_parameters():
                if not _all_zero(p):
                    continue
                negative = bool(torch.signbit(p).any())  # -0.0 entries: keep an exact copy
                saved.append((p, p.detach().clone() if negative else None))
                names.append(name)
                values = torch.rand(p.shape, generator=gen, dtype=torch.float32)
                p.copy_((PROBE_LOW + (PROBE_HIGH - PROBE_LOW) * values).to(p.dtype))
        yield names
    finally:
        with torch.no_grad():
            for p, copy in saved:
                if copy is None:
                    p.zero_()
                else:
                    p.copy_(copy)


def diagonal_norm_hooks(block: nn.Module) -> list[Any]:
    """Forward hooks making every leaf normalisation module of ``block`` channel-diagonal."""
    handles = []
    for _name, module in block.named_modules():
        if is_prunable_linear(module) or not _NORM.search(type(module).__name__) or next(module.children(), None):
            continue
        handles.append(module.register_forward_hook(_diagonal, with_kwargs=True))
    return handles
