"""Prune-and-regrow at constant sparsity: pure functions of tensors.

One update on a layer drops the ``n`` active weights with the smallest magnitude and
grows ``n`` inactive connections with the largest grow score (RigL: the dense gradient's
magnitude; SET: uniform random). The number of active weights never changes.
"""

from __future__ import annotations

import math

import torch


def cosine_update_fraction(step: int, alpha: float, end_step: int) -> float:
    """RigL's decaying fraction of active weights updated at ``step``:
    ``alpha / 2 * (1 + cos(pi * step / end_step))``, and 0 from ``end_step`` on.

    Example:
        >>> cosine_update_fraction(0, 0.3, 100), cosine_update_fraction(50, 0.3, 100)
        (0.3, 0.15)
    """
    if step >= end_step:
        return 0.0
    return round(alpha / 2 * (1 + math.cos(math.pi * step / end_step)), 12)


def drop_and_grow(
    weight: torch.Tensor, mask: torch.Tensor, grow_scores: torch.Tensor, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(new_mask, grown)``: ``fraction`` of the active weights dropped by magnitude
    and the same number regrown where ``grow_scores`` is largest among the inactive.

    A just-dropped connection may be regrown (as in RigL). ``grown`` marks connections that
    are active now but were not before (their weights should start at zero).

    Args:
        weight: the layer's weight (any shape).
        mask: bool mask, True = active.
        grow_scores: scores for growing, same shape (higher = grow first).
        fraction: fraction of active weights to replace, in [0, 1].

    Example:
        >>> w = torch.tensor([0.1, 0.5, 0.0, 0.0]); m = torch.tensor([True, True, False, False])
        >>> new, grown = drop_and_grow(w, m, torch.tensor([0.0, 0.0, 1.0, 2.0]), 0.5)
        >>> new.tolist(), grown.tolist()
        ([False, True, False, True], [False, False, False, True])
    """
    flat_mask = mask.reshape(-1).to(torch.bool)
    active = int(flat_mask.sum())
    n = min(int(round(fraction * active)), active, flat_mask.numel() - active)
    if n <= 0:
        return mask.clone().to(torch.bool), torch.zeros_like(mask, dtype=torch.bool)
    magnitude = weight.detach().reshape(-1).abs().float()
    drop_score = torch.where(flat_mask, magnitude, torch.full_like(magnitude, float("inf")))
    drop_idx = torch.argsort(drop_score, stable=True)[:n]
    after_drop = flat_mask.clone()
    after_drop[drop_idx] = False
    grow = grow_scores.detach().reshape(-1).float()
    grow = torch.where(after_drop, torch.full_like(grow, float("-inf")), grow)
    grow_idx = torch.argsort(grow, descending=True, stable=True)[:n]
    new_mask = after_drop.clone()
    new_mask[grow_idx] = True
    grown = new_mask & ~flat_mask
    return new_mask.reshape(mask.shape), grown.reshape(mask.shape)


def random_masks(shapes: list[torch.Size], densities: list[float], generator: torch.Generator) -> list[torch.Tensor]:
    """Random bool masks keeping ``round(density * numel)`` entries of each shape.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> int(random_masks([torch.Size([4, 5])], [0.25], g)[0].sum())
        5
    """
    out = []
    for shape, density in zip(shapes, densities):
        numel = math.prod(shape)
        keep = int(round(density * numel))
        order = torch.randperm(numel, generator=generator)
        flat = torch.zeros(numel, dtype=torch.bool)
        flat[order[:keep]] = True
        out.append(flat.reshape(shape))
    return out
