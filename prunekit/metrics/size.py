"""Size on disk: the effective state as a dense safetensors file, and that file compressed.

The compressed figure is the dense safetensors bytes through zlib (level 6): zeros left
by pruning compress, so it shows what sparsity saves with a general-purpose coder.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from torch import nn

from prunekit.io.tensors import state_dict_bytes
from prunekit.masks.parametrize import effective_state_dict


@dataclass(frozen=True)
class SizeResult:
    """``dense_bytes``: safetensors file; ``compressed_bytes``: same bytes through zlib."""

    dense_bytes: int
    compressed_bytes: int


def size_on_disk(model: nn.Module) -> SizeResult:
    """Measure the model's dense safetensors size and its zlib-compressed size.

    Example:
        >>> r = size_on_disk(nn.Linear(64, 64))
        >>> r.dense_bytes > 64 * 64 * 4
        True
    """
    data = state_dict_bytes(effective_state_dict(model))
    return SizeResult(dense_bytes=len(data), compressed_bytes=len(zlib.compress(data, 6)))


def size_bytes(model: nn.Module) -> int:
    """Bytes of the model's effective state saved as dense safetensors."""
    return len(state_dict_bytes(effective_state_dict(model)))


def resident_bytes(model: nn.Module) -> int:
    """Bytes of memory the model's tensors hold: parameters and buffers, each storage once.

    This is what a loaded model keeps resident (tied weights counted once; a packed
    sparse layer counts its values, index and offsets).

    Example:
        >>> resident_bytes(nn.Linear(4, 2))
        40
    """
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or t.device.type == "meta":
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total
