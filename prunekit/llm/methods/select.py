"""Keep-mask selection shared by the one-shot methods (pure tensor functions).

``scores`` are laid out like a weight ``(out_features, in_features)``; higher means keep.
"""

from __future__ import annotations

import torch

from prunekit.patterns.nm import NM, nm_keep_mask


def row_keep_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Drop the ``int(in_features * sparsity)`` lowest scores of every output row.

    Equal scores go lowest index first (as after a stable sort).

    Example:
        >>> row_keep_mask(torch.tensor([[3.0, 1.0, 2.0, 4.0]]), 0.5).tolist()
        [[True, False, False, True]]
    """
    n_drop = int(scores.shape[-1] * sparsity)
    if not n_drop:
        return torch.ones_like(scores, dtype=torch.bool)
    # the n_drop-th smallest score of each row by a partial selection (several times faster
    # than a full sort); ties at that value are dropped lowest index first, as a stable sort would
    kth = torch.topk(scores, n_drop, dim=-1, largest=False, sorted=False).values.amax(-1, keepdim=True)
    below = scores < kth
    at = scores == kth
    room = n_drop - below.sum(-1, keepdim=True)
    if bool((at.sum(-1, keepdim=True) == room).all()):  # no ties at the threshold
        return ~(below | at)
    return ~(below | (at & (at.cumsum(-1) <= room)))


def tensor_keep_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Drop the ``int(numel * sparsity)`` lowest scores of the whole tensor.

    Example:
        >>> tensor_keep_mask(torch.tensor([[3.0, 1.0], [2.0, 4.0]]), 0.5).tolist()
        [[True, False], [False, True]]
    """
    n_drop = int(scores.numel() * sparsity)
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_drop:
        order = torch.sort(scores.flatten(), stable=True).indices[:n_drop]
        keep[order] = False
    return keep.reshape(scores.shape)


def keep_mask(
    scores: torch.Tensor, sparsity: float, pattern: NM | None, *, per_row: bool
) -> torch.Tensor:
    """N:M mask when ``pattern`` is given, else a per-row or per-tensor unstructured mask."""
    if pattern is not None:
        return nm_keep_mask(scores, pattern.n, pattern.m)
    return row_keep_mask(scores, sparsity) if per_row else tensor_keep_mask(scores, sparsity)
