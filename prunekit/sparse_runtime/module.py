"""``SparseLinear``: a Linear layer (or 1x1 convolution) whose weight is stored packed."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.sparse_runtime.formats import PackedWeight
from prunekit.sparse_runtime.ops import DENSE_FROM, compiled_ops, sparse_mm


class SparseLinear(nn.Module):
    """``y = x @ W.T + b`` with ``W`` held as a :class:`PackedWeight` (never densified).

    The packed parts are buffers (``values``, ``index``, ``group_ptr``, ``scale``), so
    ``state_dict`` and safetensors see them; ``bias`` stays a parameter.

    Args:
        packed: the packed weight ``[out_features, in_features]``.
        bias: the layer's bias or None.
        conv1x1: the layer was a 1x1 ``Conv2d``: inputs are ``[N, C, H, W]``.

    Example:
        >>> from prunekit.sparse_runtime.formats import pack, SparseFormat
        >>> lin = nn.Linear(32, 4)
        >>> with torch.no_grad(): _ = lin.weight[:, ::2].zero_()
        >>> sp = SparseLinear(pack(lin.weight, SparseFormat()), lin.bias)
        >>> x = torch.randn(3, 32)
        >>> torch.allclose(sp(x), lin(x), atol=1e-5)
        True
    """

    def __init__(self, packed: PackedWeight, bias: torch.Tensor | None = None, conv1x1: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = packed.shape
        self.format = packed.format
        self.nnz = packed.nnz
        self.conv1x1 = conv1x1
        self.dense_from = DENSE_FROM  # input rows from which the BLAS GEMM runs on the rebuilt weight
        # decided once here, not in forward: torch.compile then sees plain op calls
        self.compiled = compiled_ops() is not None
        self.register_buffer("values", packed.values)
        self.register_buffer("index", packed.index)
        self.register_buffer("group_ptr", packed.group_ptr)
        self.register_buffer("scale", packed.scale)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None

    @property
    def packed(self) -> PackedWeight:
        return PackedWeight(
            self.values, self.index, self.group_ptr, self.scale,
            (self.out_features, self.in_features), self.format, self.nnz,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1x1:
            n, _, h, w = x.shape
            y = self._mm(x.permute(0, 2, 3, 1).reshape(-1, self.in_features))
            return y.reshape(n, h, w, self.out_features).permute(0, 3, 1, 2)
        return self._mm(x)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compiled:  # no compiler here: the portable reference (correct, not fast)
            return sparse_mm(x, self.packed, self.bias)
        ops = torch.ops.prunekit_sparse  # called straight: this sits on every decode step
        if self.format.index == "index16":
            return ops.sparse_mm_index.default(x, self.values, self.index, self.group_ptr, self.scale, self.bias,
                                               self.out_features, 1, self.dense_from)
        return ops.sparse_mm.default(x, self.values, self.index, self.group_ptr, self.scale, self.bias,
                                     self.out_features, self.format.rows, self.format.cols, 1, self.dense_from)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, format={self.format.label}, "
            f"values={self.format.dtype}, density={density:.3f}"
        )
