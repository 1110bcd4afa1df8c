"""Magnitude importance: |w|^p elementwise (p=1 is L1, p=2 is L2)."""

from __future__ import annotations

import torch


def magnitude_scores(weight: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Return the elementwise magnitude score ``|w| ** p`` as float32.

    Args:
        weight: any weight tensor.
        p: 1 for L1 (``|w|``), 2 for L2 (``w**2``). Rankings are the same; p matters
            only when scores are summed over groups.

    Returns:
        A float32 tensor of the same shape.

    Example:
        >>> magnitude_scores(torch.tensor([-2.0, 1.0]))
        tensor([2., 1.])
    """
    score = weight.detach().abs().float()
    return score if p == 1 else score.pow(p)
