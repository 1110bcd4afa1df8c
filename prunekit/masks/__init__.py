"""Masks: zero weights while keeping shapes, held exactly through training.

A mask is a ``torch.nn.utils.parametrize`` parametrization (``weight = original * mask``),
so the effective weight is exactly zero wherever the mask is False, whatever the
optimizer does to the stored original. ``make_permanent`` removes every mask and leaves a
plain module with the original state_dict keys.
"""

from prunekit.masks.parametrize import (
    MaskParametrization,
    apply_mask,
    effective_parameters,
    effective_state_dict,
    get_mask,
    is_masked,
    make_permanent,
    masked_tensors,
    plain_copy,
)
from prunekit.masks.report import LayerSparsity, sparsity_report
from prunekit.masks.sparsify import SparsifyConfig, prunable_layers, sparsify_, sparsify_with_scores_
from prunekit.masks.state import load_masked, save_masked

__all__ = [
    "MaskParametrization",
    "apply_mask",
    "get_mask",
    "is_masked",
    "masked_tensors",
    "make_permanent",
    "plain_copy",
    "effective_parameters",
    "effective_state_dict",
    "SparsifyConfig",
    "sparsify_",
    "sparsify_with_scores_",
    "prunable_layers",
    "LayerSparsity",
    "sparsity_report",
    "save_masked",
    "load_masked",
]
