"""safetensors save/load of tensor dicts, written atomically.

Tensors that share storage (tied weights) are cloned so safetensors accepts them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from prunekit.io.atomic import atomic_write_bytes


def _contiguous_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, t in tensors.items():
        t = t.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        else:
            seen.add(ptr)
        out[key] = t.cpu()
    return out


def state_dict_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise a tensor dict to safetensors bytes.

    Example:
        >>> b = state_dict_bytes({"w": torch.zeros(2)})
        >>> len(b) > 8
        True
    """
    from safetensors.torch import save

    return save(_contiguous_copy(tensors), metadata=metadata)


def save_tensors(
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Save a tensor dict as a safetensors file atomically; return the path."""
    return atomic_write_bytes(path, state_dict_bytes(tensors, metadata))


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file into a dict of CPU tensors."""
    from safetensors.torch import load_file

    return load_file(str(path))
