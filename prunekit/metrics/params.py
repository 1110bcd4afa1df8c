"""Parameter counts: total and non-zero, as the forward pass sees the weights."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.masks.parametrize import effective_parameters


def _unique_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Effective parameters, each storage once (tied weights counted once)."""
    seen: set[int] = set()
    out = []
    for p in effective_parameters(model).values():
        key = id(p) if p.numel() == 0 else p.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def count_params(model: nn.Module) -> int:
    """Total number of parameter elements (tied parameters counted once).

    Example:
        >>> count_params(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in _unique_parameters(model))


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero parameter elements, masks applied (tied parameters once).

    Example:
        >>> lin = nn.Linear(3, 2, bias=False)
        >>> _ = nn.init.zeros_(lin.weight)
        >>> count_nonzero(lin)
        0
    """
    return sum(int((p != 0).sum()) for p in _unique_parameters(model))
