"""Unstructured selection: keep the highest-scoring weights, per layer or globally.

Ties are broken deterministically by position (stable sort), so exactly the requested
number of weights is pruned.
"""

from __future__ import annotations

import torch


def keep_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Return a bool mask that is False at the ``n_prune`` lowest scores.

    Args:
        scores: float scores of any shape (``-inf`` marks weights that must go first).
        n_prune: how many entries to prune, 0 <= n_prune <= scores.numel().

    Returns:
        Bool tensor shaped like ``scores``.

    Example:
        >>> keep_mask(torch.tensor([3.0, 1.0, 2.0, 4.0]), 2)
        tensor([ True, False, False,  True])
    """
    flat = scores.reshape(-1)
    mask = torch.ones(flat.numel(), dtype=torch.bool)
    if n_prune > 0:
        order = torch.argsort(flat.float(), stable=True)
        mask[order[:n_prune]] = False
    return mask.reshape(scores.shape)


def layer_keep_masks(scores: list[torch.Tensor], amount: float | int) -> list[torch.Tensor]:
    """Prune the same amount in every tensor: a fraction of each, or a count from each.

    Example:
        >>> [m.tolist() for m in layer_keep_masks([torch.tensor([1., 2.]), torch.tensor([5., 4.])], 0.5)]
        [[False, True], [True, False]]
    """
    out = []
    for s in scores:
        n = _count(amount, s.numel())
        out.append(keep_mask(s, n))
    return out


def global_keep_masks(scores: list[torch.Tensor], amount: float | int) -> list[torch.Tensor]:
    """Rank all scores together and prune the lowest ``amount`` (fraction or count) overall.

    Example:
        >>> [m.tolist() for m in global_keep_masks([torch.tensor([1., 2.]), torch.tensor([5., 4.])], 0.5)]
        [[False, False], [True, True]]
    """
    sizes = [s.numel() for s in scores]
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    mask = keep_mask(flat, _count(amount, flat.numel()))
    return [m.reshape(s.shape) for m, s in zip(mask.split(sizes), scores)]


def _count(amount: float | int, total: int) -> int:
    """Number of entries to prune: ``round(fraction * total)`` or a count capped at ``total``."""
    if isinstance(amount, int):
        return min(amount, total)
    return int(round(amount * total))
