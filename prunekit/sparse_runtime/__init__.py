"""Sparse inference runtime: sparse weights that run faster and take less memory on CPUs.

- ``formats``: pure packing of a weight with zeros into bitmask / N:M / block / index16
  storage with float32, bfloat16 or int8 values;
- ``ops``: the sparse-times-dense op (compiled C++ kernels registered with
  ``torch.library``, a PyTorch reference where no compiler exists);
"""

from prunekit.sparse_runtime.build import KernelStatus, kernel_status
from prunekit.sparse_runtime.formats import PackedWeight, SparseFormat, pack, unpack
from prunekit.sparse_runtime.ops import reference_mm, sparse_mm

__all__ = [
    "KernelStatus",
    "kernel_status",
    "PackedWeight",
    "SparseFormat",
    "pack",
    "unpack",
    "reference_mm",
    "sparse_mm",
]
