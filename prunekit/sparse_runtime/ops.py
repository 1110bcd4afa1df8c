"""The sparse-times-dense op: the compiled kernel when it loads, a PyTorch reference otherwise.

``sparse_mm`` computes ``x @ W.T (* scale) (+ bias)`` for a :class:`PackedWeight` ``W``.
The compiled op is ``torch.ops.prunekit_sparse.sparse_mm`` (registered with
``torch.library`` in C++, CPU and Meta kernels, so ``torch.compile`` and tracing see
one opaque op).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from prunekit.sparse_runtime.build import kernel_status
from prunekit.sparse_runtime.formats import PackedWeight, unpack


@lru_cache(maxsize=1)
def compiled_ops() -> tuple | None:
    """``(sparse_mm, sparse_mm_index)`` op overloads once the kernels are loaded, else None."""
    if not kernel_status().compiled:
        return None
    ops = torch.ops.prunekit_sparse
    return ops.sparse_mm.default, ops.sparse_mm_index.default


def reference_mm(x: torch.Tensor, packed: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Portable result: unpack to dense and multiply (what the kernels must match).

    Example:
        >>> from prunekit.sparse_runtime.formats import pack, SparseFormat
        >>> w = torch.tensor([[0., 2.], [3., 0.]])
        >>> reference_mm(torch.ones(1, 2), pack(w, SparseFormat())).tolist()
        [[2.0, 3.0]]
    """
    return F.linear(x.float(), unpack(packed), None if bias is None else bias.float()).to(x.dtype)


#: from this many input rows on, the kernels rebuild the dense weight and call the BLAS GEMM
DENSE_FROM = 32


def sparse_mm(
    x: torch.Tensor,
    packed: PackedWeight,
    bias: torch.Tensor | None = None,
    *,
    simd: bool | str = True,
    dense_from: int = DENSE_FROM,
) -> torch.Tensor:
    """``x @ W.T + bias`` with ``W`` packed; ``x`` is ``[..., in_features]``.

    Args:
        simd: ``True`` the best vector path of this CPU, ``"avx2"`` at most AVX2, ``False``
            the portable C++ loops (tests compare all three).
        dense_from: with at least this many rows in ``x`` (a prefill, a big batch) the
            product is compute-bound: the dense weight is rebuilt for the call and the BLAS
            GEMM runs, so large batches are not slower than dense. 0 disables it.

    Example:
        >>> from prunekit.sparse_runtime.formats import pack, SparseFormat
        >>> w = torch.tensor([[0., 2.], [3., 0.]])
        >>> sparse_mm(torch.ones(1, 2), pack(w, SparseFormat())).tolist()
        [[2.0, 3.0]]
    """
    ops = compiled_ops()
    if ops is None:
        return reference_mm(x, packed, bias)
    fmt = packed.format
    level = {True: 1, False: 0, "avx2": 2}[simd]
    if fmt.index == "index16":
        return ops[1](
            x, packed.values, packed.index, packed.group_ptr, packed.scale, bias, packed.shape[0], level,
            dense_from,
        )
    return ops[0](
        x, packed.values, packed.index, packed.group_ptr, packed.scale, bias,
        packed.shape[0], fmt.rows, fmt.cols, level, dense_from,
    )
