"""Wanda (Sun et al. 2023): score ``|W_ij| * ||X_j||_2``, compared within each output row."""

from __future__ import annotations

import torch

from prunekit.llm.methods.select import keep_mask
from prunekit.patterns.nm import NM


def wanda_scores(weight: torch.Tensor, input_sq_norm: torch.Tensor) -> torch.Tensor:
    """``|W| * sqrt(sum_t x_tj^2)`` for a ``(out, in)`` weight and per-input-feature squared norms.

    Example:
        >>> wanda_scores(torch.tensor([[1.0, -2.0]]), torch.tensor([16.0, 1.0])).tolist()
        [[4.0, 2.0]]
    """
    if input_sq_norm.shape != weight.shape[-1:]:
        raise ValueError(
            f"wanda: input norm has shape {tuple(input_sq_norm.shape)}, "
            f"expected ({weight.shape[-1]},) for a weight {tuple(weight.shape)}"
        )
    return weight.detach().abs().float() * input_sq_norm.float().clamp_min(0).sqrt().unsqueeze(0)


def wanda_keep_mask(
    weight: torch.Tensor, input_sq_norm: torch.Tensor, sparsity: float, pattern: NM | None = None
) -> torch.Tensor:
    """Keep-mask: the lowest-scoring ``sparsity`` fraction of each output row is dropped (or N:M).

    Example:
        >>> w = torch.tensor([[1.0, -2.0, 3.0, 0.1]])
        >>> wanda_keep_mask(w, torch.tensor([16.0, 1.0, 1.0, 100.0]), 0.5).tolist()
        [[True, False, True, False]]
    """
    return keep_mask(wanda_scores(weight, input_sq_norm), sparsity, pattern, per_row=True)
