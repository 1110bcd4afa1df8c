"""Magnitude pruning: keep the weights with the largest ``|W|`` (no calibration data)."""

from __future__ import annotations

import torch

from prunekit.llm.methods.select import keep_mask
from prunekit.patterns.nm import NM


def magnitude_keep_mask(weight: torch.Tensor, sparsity: float, pattern: NM | None = None) -> torch.Tensor:
    """Keep-mask of a ``(out, in)`` weight by ``|W|``, ranked over the whole layer.

    Unstructured: the ``sparsity`` fraction of smallest ``|W|`` in the layer is dropped
    (the layer-wise baseline of the Wanda and SparseGPT papers). N:M: the ``n`` largest of
    every ``m`` consecutive input weights are kept.

    Example:
        >>> magnitude_keep_mask(torch.tensor([[1.0, -4.0], [3.0, 0.5]]), 0.5).tolist()
        [[False, True], [True, False]]
    """
    return keep_mask(weight.detach().abs().float(), sparsity, pattern, per_row=False)
