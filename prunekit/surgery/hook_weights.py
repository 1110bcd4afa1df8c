"""Weights that forward pre-hooks recompute (the legacy ``torch.nn.utils.weight_norm``).

The hook sets ``module.weight`` from ``weight_g`` / ``weight_v`` before every forward; right
after slicing those, the attribute still has the old shape, and the layer's sync would
read stale sizes from it. ``refresh_hook_weights`` recomputes it first.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.weight_norm import WeightNorm


def refresh_hook_weights(model: nn.Module) -> None:
    """Recompute every weight a ``WeightNorm`` pre-hook derives, from the (sliced)
    parameters it reads.

    Example:
        >>> import torch
        >>> lin = nn.utils.weight_norm(nn.Linear(3, 4))
        >>> lin.weight_v = nn.Parameter(lin.weight_v[:2].detach())
        >>> lin.weight_g = nn.Parameter(lin.weight_g[:2].detach())
        >>> refresh_hook_weights(lin); tuple(lin.weight.shape)
        (2, 3)
    """
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm):
                setattr(module, hook.name, hook.compute_weight(module))
