"""One-shot pruning methods for transformer linear layers (pure: tensors in, tensors out)."""

from prunekit.llm.config import METHODS
from prunekit.llm.methods.block_fit import BlockFit, fit_block
from prunekit.llm.methods.magnitude import magnitude_keep_mask
from prunekit.llm.methods.permute import balanced_permutation, nm_retained
from prunekit.llm.methods.reconstruct import reconstruct_masked
from prunekit.llm.methods.select import row_keep_mask, tensor_keep_mask
from prunekit.llm.methods.sparsegpt import sparsegpt_prune
from prunekit.llm.methods.wanda import wanda_keep_mask, wanda_scores

__all__ = [
    "METHODS",
    "magnitude_keep_mask",
    "wanda_keep_mask",
    "wanda_scores",
    "sparsegpt_prune",
    "reconstruct_masked",
    "fit_block",
    "BlockFit",
    "balanced_permutation",
    "nm_retained",
    "row_keep_mask",
    "tensor_keep_mask",
]
