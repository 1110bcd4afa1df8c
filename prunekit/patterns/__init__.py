"""Patterns: *what shape* is removed. Pure selection functions: scores in, keep-masks out."""

from prunekit.patterns.nm import NM, check_nm_divides, nm_keep_mask
from prunekit.patterns.unstructured import global_keep_masks, keep_mask, layer_keep_masks

__all__ = [
    "keep_mask",
    "global_keep_masks",
    "layer_keep_masks",
    "NM",
    "nm_keep_mask",
    "check_nm_divides",
]
