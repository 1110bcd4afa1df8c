"""Sparse inference runtime: sparse weights that run faster and take less memory.

- ``formats``: pure packing of a weight with zeros into bitmask / N:M / block / index16
  storage with float32, bfloat16 or int8 values;
- ``ops``: the sparse-times-dense op (C++ kernels compiled at first use and registered
  with ``torch.library``; a PyTorch reference where no compiler exists);
- ``module``: ``SparseLinear``; ``convert``: ``sparse_inference_`` times dense against each
  format per layer and keeps the fastest; ``cuda``: 2:4 semi-structured on GPUs;
- ``io``: ``save_sparse`` / ``load_sparse`` (safetensors); ``compact``: ``load_compact_sparse``
  packs a ``save_compact`` file's sparse weights directly; ``report``: the per-layer table.
"""

from prunekit.sparse_runtime.build import KernelStatus, kernel_status
from prunekit.sparse_runtime.compact import load_compact_sparse
from prunekit.sparse_runtime.config import SparseInferenceConfig
from prunekit.sparse_runtime.convert import sparse_inference_
from prunekit.sparse_runtime.formats import PackedWeight, SparseFormat, pack, unpack
from prunekit.sparse_runtime.io import load_sparse, save_sparse
from prunekit.sparse_runtime.module import SparseLinear
from prunekit.sparse_runtime.ops import reference_mm, sparse_mm
from prunekit.sparse_runtime.report import LayerChoice, SparseInferenceReport

__all__ = [
    "KernelStatus",
    "kernel_status",
    "SparseInferenceConfig",
    "sparse_inference_",
    "PackedWeight",
    "SparseFormat",
    "pack",
    "unpack",
    "load_sparse",
    "load_compact_sparse",
    "save_sparse",
    "SparseLinear",
    "reference_mm",
    "sparse_mm",
    "LayerChoice",
    "SparseInferenceReport",
]
