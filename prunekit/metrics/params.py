"""Parameter counts: total and non-zero, as the forward pass sees the weights."""

from __future__ import annotations

from torch import nn

from prunekit.masks.parametrize import effective_parameters


def count_params(model: nn.Module) -> int:
    """Total number of parameter elements (tied parameters counted once).

    Example:
        >>> count_params(nn.Linear(3, 2))
        8
    """
    seen: set[int] = set()
    total = 0
    for p in effective_parameters(model).values():
        key = id(p) if p.numel() == 0 else p.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += p.numel()
    return total


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero parameter elements, masks applied (tied parameters once).

    Example:
        >>> lin = nn.Linear(3, 2, bias=False)
        >>> _ = nn.init.zeros_(lin.weight)
        >>> count_nonzero(lin)
        0
    """
    seen: set[int] = set()
    total = 0
    for p in effective_parameters(model).values():
        key = id(p) if p.numel() == 0 else p.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += int((p != 0).sum())
    return total
