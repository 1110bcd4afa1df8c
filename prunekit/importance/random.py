"""Random importance: uniform scores from a seeded generator (a baseline for studies)."""

from __future__ import annotations

import torch


def random_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return uniform random scores in [0, 1) shaped like ``weight``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_scores(torch.zeros(3), g).shape
        torch.Size([3])
    """
    return torch.rand(weight.shape, generator=generator, dtype=torch.float32)
