"""Shape-only execution of the heavy ops (convolution, matmul, attention kernels).

Tracing and validating only need shapes. Inside ``ShapeOnly()`` the compute-bound aten
ops return zeros of the right shape (computed on the meta device) instead of doing the
arithmetic; every other op runs normally, so Python control flow and index buffers
behave as usual. A forward of a 600M-parameter ViT then costs memory traffic, not
hundreds of GFLOPs.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

HEAVY = {
    "convolution", "_convolution", "mm", "bmm", "addmm", "baddbmm", "addbmm",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
}


def is_heavy(func) -> bool:
    return func.__name__.split(".")[0] in HEAVY


def shape_only_call(func, args, kwargs):
    """Zeros shaped like ``func(*args)``'s output, or None if meta cannot tell."""
    def to_meta(a):
        return a.to("meta") if isinstance(a, torch.Tensor) else a

    try:
        meta_out = func(*tree_map(to_meta, args), **tree_map(to_meta, kwargs))
    except Exception:
        return None
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))

    def real(t):
        if isinstance(t, torch.Tensor):
            return torch.zeros(t.shape, dtype=t.dtype, device=device)
        return t

    return tree_map(real, meta_out)


class ShapeOnly(TorchDispatchMode):
    """Run a forward with the heavy ops replaced by zeros of the right shape.

    Example:
        >>> lin = torch.nn.Linear(4, 3)
        >>> with ShapeOnly():
        ...     y = lin(torch.ones(2, 4))
        >>> y.shape, float(y.abs().sum())
        (torch.Size([2, 3]), 0.0)
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if is_heavy(func):
            out = shape_only_call(func, args, kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)
