"""Precision of the calibration forwards: bf16 autocast where the hardware has fast bf16.

The calibration forwards (each block run over every calibration token) are most of a
Wanda run and a large part of a SparseGPT run. On CPUs with AMX or AVX512-BF16 (and on
GPUs with bf16) their matrix products run several times faster under bf16 autocast.
Only the products are in bf16: autocast keeps the residual stream, norms and softmax
in float32, the input statistics are accumulated in float32 and the weights stay in
the model's dtype (a mask is chosen from float32 scores and applied to the float32
weight).

``calib_dtype`` (config field / ``--calib-dtype``):

* ``"auto"``: bf16 autocast when the device has fast bf16 and the model is float32,
  else plain float32 forwards;
* ``"float32"``: never autocast (the forwards in the model's own dtype);
* ``"bfloat16"``: always autocast to bf16 (also where it is slow).

Example:
    >>> resolve_calib_dtype("float32", "cpu", torch.float32) is None
    True
    >>> resolve_calib_dtype("bfloat16", "cpu", torch.float32)
    torch.bfloat16
    >>> with calibration_autocast(torch.bfloat16, "cpu"):
    ...     y = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    >>> y.dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

CALIB_DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")


def fast_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bf16 matrices faster than float32 (AMX / AVX512-BF16 on
    a CPU; bf16 support on a CUDA GPU)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_calib_dtype(name: str, device: torch.device | str,
                        model_dtype: torch.dtype = torch.float32) -> torch.dtype | None:
    """The autocast dtype of the calibration forwards, or None for none.

    Args:
        name: ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see the module doc).
        device: where the blocks run. model_dtype: the dtype of the model's weights
            (``"auto"`` autocasts float32 models only).
    """
    if name not in CALIB_DTYPES:
        raise ValueError(f"calib_dtype must be one of {CALIB_DTYPES}, got {name!r}")
    if name == "float32":
        return None
    if name == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if model_dtype == torch.float32 and fast_bf16(device) else None


@contextlib.contextmanager
def calibration_autocast(dtype: torch.dtype | None, device: torch.device | str) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``'s type inside the block (nothing when None).

    The weight-cast cache is off: a layer pruned inside the region (the single pass) or
    between two regions must never be multiplied with a stale cast of its dense weight.
    """
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype, cache_enabled=False):
        yield


def autocast_breaks(model: nn.Module, batch: Mapping[str, Any], dtype: torch.dtype) -> bool:
    """Whether ``model``'s forward fails under autocast to ``dtype`` but runs without it, on the
    first row and 8 tokens of ``batch`` (keyword inputs). A model that writes a bf16 product
    into a float32 tensor in place (X-MOD's language adapters: ``new[mask] = adapter(x)``, DBRX's
    ``index_add_`` of expert outputs) cannot calibrate under autocast: ``"auto"`` then falls back
    to float32 forwards. False when the forward fails either way (nothing is learned).

    Example:
        >>> class InPlace(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.lin = nn.Linear(4, 4)
        ...     def forward(self, x):
        ...         return torch.zeros_like(x).index_add_(0, torch.tensor([0]), self.lin(x))
        >>> autocast_breaks(InPlace(), {"x": torch.ones(1, 4)}, torch.bfloat16)
        True
        >>> autocast_breaks(nn.Linear(4, 4), {"input": torch.ones(1, 4)}, torch.bfloat16)
        False
    """
    small = {k: v[:1, :8] if isinstance(v, torch.Tensor) and v.dim() >= 2 else v for k, v in batch.items()}
    device = next(model.parameters()).device
    with torch.no_grad():
        try:
            with calibration_autocast(dtype, device):
                model(**small)
            return False
        except Exception:
            pass
        try:
            model(**small)
        except Exception:
            return False
    return True
