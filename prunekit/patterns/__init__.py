"""Patterns: *what shape* is removed. Pure selection functions: scores in, keep-masks out.

- unstructured: any single weight (``keep_mask``, ``global_keep_masks``, ``layer_keep_masks``)
- N:M: ``n`` kept of every ``m`` consecutive input weights (``NM``, ``nm_keep_mask``)
- block: whole ``rows x cols`` tiles (``Block``, ``block_scores``, ``expand_block_mask``)
"""

from prunekit.patterns.block import Block, block_scores, expand_block_mask
from prunekit.patterns.configs import Unstructured
from prunekit.patterns.nm import NM, check_nm_divides, nm_keep_mask
from prunekit.patterns.unstructured import global_keep_masks, keep_mask, layer_keep_masks

__all__ = [
    "Unstructured",
    "NM",
    "Block",
    "keep_mask",
    "global_keep_masks",
    "layer_keep_masks",
    "nm_keep_mask",
    "check_nm_divides",
    "block_scores",
    "expand_block_mask",
]
