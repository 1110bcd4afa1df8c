"""Block reconstruction: re-fit a pruned decoder block's kept weights to the dense block's outputs.

After the masks of a block are chosen, Adam steps minimise the relative squared error
between the sparse block's outputs and the targets (the dense model's block outputs) on the
block's own calibration inputs. Only the weights (and biases) of the block's linear layers
move; a weight that is zero stays exactly zero (its gradient is zeroed before every step and
the mask is re-applied after it), so the sparsity pattern never changes.

With two or more calibration batches the last one is held out: the fit never trains on it,
and after every pass over the training batches (and at the start) its error is measured;
the weights with the lowest held-out error are kept. So a fit that overfits the few
calibration tokens, or diverges, falls back to its best point (at worst the starting weights).

The forward and backward passes may run under bf16 autocast (``bf16=True``: much faster on
CPUs with AMX / AVX512-BF16 and on recent GPUs); the weights, their Adam state and the masks
stay in the model's dtype, and the errors are always measured without autocast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import find_linears
from prunekit.llm.precision import calibration_autocast, fast_bf16
from prunekit.llm.sequential import block_output


@dataclass
class BlockFit:
    """Relative output error ``||out - target||^2 / ||target||^2`` before and after the fit.

    ``error_before`` / ``error_after``: over all batches. ``heldout_before`` /
    ``heldout_after``: on the held-out batch (None when there was a single batch).
    ``steps``: optimiser steps taken; ``best_step``: the step whose weights were kept
    (0: the starting weights).
    """

    error_before: float
    error_after: float
    steps: int
    heldout_before: float | None = None
    heldout_after: float | None = None
    best_step: int = 0


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


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """Learning rate at ``step`` of ``steps``: ``lr`` decayed to zero along a half cosine."""
    return lr * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))


def _train_order(n_train: int, steps: int) -> Iterator[tuple[int, int, bool]]:
    """``(step, batch index, end of a pass)`` cycling over the training batches."""
    for step in range(steps):
        yield step, step % n_train, (step + 1) % n_train == 0 or step + 1 == steps


def fit_block(
    block: nn.Module,
    hidden: Sequence[torch.Tensor],
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]],
    targets: Sequence[torch.Tensor],
    *,
    steps: int = 32,
    lr: float = 1e-4,
    bf16: bool = False,
    holdout: bool = True,
) -> BlockFit:
    """Adam steps on the block's linear weights towards ``targets``, zeros held; in place.

    Args:
        block: a pruned transformer block (its zero weights are the mask).
        hidden, args, kwargs: the block's calibration inputs, one entry per batch
            (:class:`prunekit.llm.sequential.BlockInputs`).
        targets: the dense block's (or dense model's) outputs on the same tokens, one per batch.
        steps: optimiser steps (one training batch each, cycling; 0 does nothing).
        lr: Adam's learning rate, decayed to zero along a cosine.
        bf16: run the forward and backward passes under bf16 autocast (when the device
            supports it fast, :func:`prunekit.llm.precision.fast_bf16`; otherwise ignored).
        holdout: with two or more batches, hold the last one out and keep the weights with
            the lowest error on it (checked at the start and after every pass).

    Returns:
        A :class:`BlockFit` with the relative output errors before and after.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> block = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
        >>> x = [torch.randn(64, 8) for _ in range(3)]
        >>> targets = [block(h).detach() for h in x]
        >>> with torch.no_grad():
        ...     for lin in (block[0], block[2]):
        ...         _ = lin.weight.mul_(torch.rand_like(lin.weight) > 0.5)
        >>> zeros = [lin.weight == 0 for lin in (block[0], block[2])]
        >>> fit = fit_block(block, x, [()] * 3, [{}] * 3, targets, steps=60, lr=1e-2)
        >>> fit.error_after < 0.5 * fit.error_before, fit.heldout_after < fit.heldout_before
        (True, True)
        >>> all(bool((lin.weight[z] == 0).all()) for lin, z in zip((block[0], block[2]), zeros))
        True
    """
    before = block_error(block, hidden, args, kwargs, targets)
    if steps <= 0 or not hidden:
        return BlockFit(before, before, 0)
    linears = list(find_linears(block).values()) or [m for m in block.modules() if isinstance(m, nn.Linear)]
    weights = [lin.weight for lin in linears]
    biases = [lin.bias for lin in linears if getattr(lin, "bias", None) is not None]
    params = weights + biases
    masks = [w.detach() != 0 for w in weights]
    n_train = len(hidden) - 1 if holdout and len(hidden) >= 2 else len(hidden)
    held = range(n_train, len(hidden))  # by index: an out-of-core store does not slice

    def heldout_error() -> float | None:
        if n_train == len(hidden):
            return None
        return block_error(block, [hidden[i] for i in held], [args[i] for i in held],
                           [kwargs[i] for i in held], [targets[i] for i in held])

    heldout_before = best_err = heldout_error()
    best = [p.detach().clone() for p in params]
    best_step = 0
    use_bf16 = bf16 and fast_bf16(hidden[0].device)
    flags = {p: p.requires_grad for p in block.parameters()}
    for p in block.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    try:
        for step, j, pass_end in _train_order(n_train, steps):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(lr, step, steps)
            with torch.enable_grad(), calibration_autocast(torch.bfloat16 if use_bf16 else None, hidden[j].device):
                out = block_output(block(hidden[j], *args[j], **kwargs[j]))
            t = targets[j].float()
            with torch.enable_grad():
                loss = (out.float() - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-30)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            for w, m in zip(weights, masks):
                if w.grad is not None:
                    w.grad.mul_(m)
            opt.step()
            with torch.no_grad():
                for w, m in zip(weights, masks):
                    w.mul_(m)
            if pass_end and n_train < len(hidden):
                err = heldout_error()
                if err is not None and best_err is not None and err < best_err:  # NaN never wins
                    best_err, best_step = err, step + 1
                    best = [p.detach().clone() for p in params]
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        opt.zero_grad(set_to_none=True)
    if n_train < len(hidden):
        if best_step != steps:
            with torch.no_grad():
                for p, s in zip(params, best):
                    p.copy_(s)
        after = block_error(block, hidden, args, kwargs, targets)
        return BlockFit(before, after, steps, heldout_before, best_err, best_step)
    after = block_error(block, hidden, args, kwargs, targets)
    if not after <= before:  # also catches NaN
        with torch.no_grad():
            for p, s in zip(params, best):
                p.copy_(s)
        return BlockFit(before, before, steps, None, None, 0)
    return BlockFit(before, after, steps, None, None, steps)
