"""CUDA: 2:4 layers as PyTorch semi-structured sparse tensors (cuSPARSELt / CUTLASS).

Same contract as the CPU path: the dense layer and the semi-structured one are timed on
the captured input, and the sparse one is kept only when it is faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.sparse_runtime.config import SparseInferenceConfig
from prunekit.sparse_runtime.formats import nm_pattern
from prunekit.sparse_runtime.report import LayerChoice
from prunekit.sparse_runtime.timing import time_candidates

SEMI_STRUCTURED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.int8)


class SemiStructuredLinear(nn.Module):
    """``y = x @ W.T + b`` with ``W`` a ``SparseSemiStructuredTensor`` (2:4, CUDA).

    Example (needs a CUDA GPU with sparse tensor cores)::

        lin = SemiStructuredLinear(weight_2to4.cuda().half(), None)
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(to_sparse_semi_structured(weight.detach().contiguous()), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        return F.linear(flat, self.weight, self.bias).reshape(*x.shape[:-1], self.out_features)


def choose_cuda(
    module: nn.Module, w: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor,
    row: LayerChoice, cfg: SparseInferenceConfig,
) -> tuple[nn.Module | None, LayerChoice]:
    """Time dense vs semi-structured 2:4 for one CUDA layer; return (replacement or None, row)."""
    if not isinstance(module, nn.Linear) or "nm" not in cfg.formats or nm_pattern(w, ((2, 4),)) is None:
        row.reason = "CUDA runs 2:4 Linear layers only"
        return None, row
    if w.dtype not in SEMI_STRUCTURED_DTYPES:
        row.reason = f"semi-structured sparsity does not take {w.dtype}"
        return None, row
    try:
        sparse = SemiStructuredLinear(w, bias)
        sparse(x)
    except (RuntimeError, NotImplementedError) as exc:
        row.reason = f"semi-structured unavailable: {str(exc).splitlines()[0][:80]}"
        return None, row
    row.batch = x.numel() // w.shape[1]
    times = time_candidates(
        {"dense": lambda: F.linear(x, w, bias), "nm-2:4-cuda": lambda: sparse(x)},
        rounds=cfg.rounds, device=w.device,
    )
    row.dense_us, row.sparse_us = times["dense"], times["nm-2:4-cuda"]
    row.candidates_us = {"nm-2:4-cuda": row.sparse_us}
    if row.sparse_us * cfg.min_speedup <= row.dense_us:
        row.format = "nm-2:4-cuda"
        row.stored_bytes = int(w.numel() * w.element_size() * 9 // 16)  # half the values + 2-bit metadata
        return sparse, row
    row.reason = "dense is faster"
    return None, row
