"""safetensors save/load of tensor dicts, written atomically.

Tensors that share storage (tied weights) are cloned so safetensors accepts them.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.io.atomic import atomic_write_with


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
    """Save a tensor dict as a safetensors file atomically; return the path.

    The file is written by ``safetensors.torch.save_file`` straight from the tensors (no
    serialised copy in memory), the very bytes of :func:`state_dict_bytes`.
    """
    from safetensors.torch import save_file

    tensors = _contiguous_copy(tensors)
    return atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file into a dict of CPU tensors."""
    from safetensors.torch import load_file

    return load_file(str(path))


def load_state_into(model: nn.Module, tensors: dict[str, torch.Tensor], strict: bool = True) -> Any:
    """``model.load_state_dict(tensors)`` as if ``tensors`` came from ``model.state_dict()``.

    A safetensors file keeps tensors only, not the per-module ``version`` metadata that
    ``state_dict()`` attaches; some modules' ``_load_from_state_dict`` (torchvision's
    MNASNet, BatchNorm) read it. The metadata of ``model``'s own state dict (the same
    architecture) is attached before loading.

    Example:
        >>> from torch import nn
        >>> layer = nn.BatchNorm1d(2)
        >>> load_state_into(layer, {k: v.clone() for k, v in layer.state_dict().items()})
        <All keys matched successfully>
    """
    state: Any = OrderedDict(tensors)
    state._metadata = getattr(model.state_dict(), "_metadata", OrderedDict())
    return model.load_state_dict(state, strict=strict)
