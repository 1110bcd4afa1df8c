"""OWL (Yin et al. 2023): outlier-weighted layer-wise sparsity.

Blocks with more activation outliers keep more weights. A block's outlier ratio is the
fraction of its Wanda scores above ``M`` times their mean; ratios are scaled into
``[0, 2*lambda]``, centred, and turned into per-block sparsities averaging the target.
"""

from __future__ import annotations

import torch


def outlier_ratio(scores: list[torch.Tensor], threshold: float = 5.0) -> float:
    """Fraction of all entries of ``scores`` greater than ``threshold * mean``.

    Example:
        >>> outlier_ratio([torch.tensor([1.0, 1.0, 1.0, 100.0])], threshold=2.0)
        0.25
    """
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    return (flat > threshold * flat.mean()).float().mean().item()


def owl_sparsities(ratios: list[float], target: float, lam: float) -> list[float]:
    """Per-block sparsities from outlier ratios; their mean equals ``target``.

    Example:
        >>> [round(s, 3) for s in owl_sparsities([0.0, 0.01, 0.02], 0.5, 0.08)]
        [0.58, 0.5, 0.42]
    """
    r = torch.tensor(ratios, dtype=torch.float64)
    if r.numel() == 0 or float(r.max() - r.min()) == 0.0:
        return [float(target)] * r.numel()
    scaled = (r - r.min()) / (r.max() - r.min()) * (2 * lam)
    keep = scaled - scaled.mean() + (1 - target)
    return [float(1 - k) for k in keep]
