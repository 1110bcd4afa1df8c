"""Block reconstruction: re-fit a pruned decoder block's kept weights to the dense block's outputs.

After the masks of a block are chosen, a few Adam steps minimise the mean squared error
between the sparse block's outputs and the dense block's outputs on the block's own
calibration inputs. Only the weights (and biases) of the block's linear layers move; a
weight that is zero stays exactly zero (its gradient is zeroed before every step and the
mask is re-applied after it), so the sparsity pattern never changes. When the fit ends
with a larger error than it started with, the starting weights are restored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import find_linears
from prunekit.llm.sequential import block_output


@dataclass
class BlockFit:
    """Relative output error ``||out - target||^2 / ||target||^2`` before and after the fit."""

    error_before: float
    error_after: float
    steps: int


def block_error(
    block: nn.Module,
    hidden: Sequence[torch.Tensor],
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]],
    targets: Sequence[torch.Tensor],
) -> float:
    """Relative squared error of the block's outputs against ``targets`` over all batches."""
    err = ref = 0.0
    with torch.no_grad():
        for h, a, kw, t in zip(hidden, args, kwargs, targets):
            out = block_output(block(h, *a, **kw)).float()
            err += float((out - t.float()).pow(2).sum())
            ref += float(t.float().pow(2).sum())
    return err / max(ref, 1e-30)


def fit_block(
    block: nn.Module,
    hidden: Sequence[torch.Tensor],
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]],
    targets: Sequence[torch.Tensor],
    *,
    steps: int = 32,
    lr: float = 1e-4,
) -> BlockFit:
    """Adam steps on the block's linear weights towards ``targets``, zeros held; in place.

    Args:
        block: a pruned transformer block (its zero weights are the mask).
        hidden, args, kwargs: the block's calibration inputs, one entry per batch
            (:class:`prunekit.llm.sequential.BlockInputs`).
        targets: the dense block's outputs on the same inputs, one tensor per batch.
        steps: optimiser steps (one calibration batch each, cycling; 0 does nothing).
        lr: Adam's learning rate, decayed to zero along a cosine.

    Returns:
        A :class:`BlockFit` with the relative output errors before and after.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> block = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
        >>> x = [torch.randn(64, 8) for _ in range(2)]
        >>> targets = [block(h).detach() for h in x]
        >>> with torch.no_grad():
        ...     for lin in (block[0], block[2]):
        ...         _ = lin.weight.mul_(torch.rand_like(lin.weight) > 0.5)
        >>> zeros = [lin.weight == 0 for lin in (block[0], block[2])]
        >>> fit = fit_block(block, x, [()] * 2, [{}] * 2, targets, steps=60, lr=1e-2)
        >>> fit.error_after < 0.5 * fit.error_before
        True
        >>> all(bool((lin.weight[z] == 0).all()) for lin, z in zip((block[0], block[2]), zeros))
        True
    """
    before = block_error(block, hidden, args, kwargs, targets)
    if steps <= 0 or not hidden:
        return BlockFit(before, before, 0)
    linears = list(find_linears(block).values()) or [m for m in block.modules() if isinstance(m, nn.Linear)]
    weights = [lin.weight for lin in linears]
    biases = [lin.bias for lin in linears if getattr(lin, "bias", None) is not None]
    masks = [w.detach() != 0 for w in weights]
    saved = [p.detach().clone() for p in weights + biases]
    flags = {p: p.requires_grad for p in block.parameters()}
    for p in block.parameters():
        p.requires_grad_(False)
    params = weights + biases
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    try:
        with torch.enable_grad():
            for step in range(steps):
                j = step % len(hidden)
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
                out = block_output(block(hidden[j], *args[j], **kwargs[j]))
                t = targets[j]
                loss = (out.float() - t.float()).pow(2).mean() / t.float().pow(2).mean().clamp_min(1e-30)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for w, m in zip(weights, masks):
                    if w.grad is not None:
                        w.grad.mul_(m)
                opt.step()
                with torch.no_grad():
                    for w, m in zip(weights, masks):
                        w.mul_(m)
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        opt.zero_grad(set_to_none=True)
    after = block_error(block, hidden, args, kwargs, targets)
    if not after <= before:  # also catches NaN
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        after = before
    return BlockFit(before, after, steps)
