"""Symmetric per-channel integer quantization (pure math: tensors in, tensors out).

``q = round(w / scale)`` clamped to ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with one scale per
output channel, ``scale = max|w| / (2^(b-1) - 1)``. Zero maps to exactly zero (no zero
point), so pruned weights stay pruned and ``dequantize(q, scale)`` is zero where ``w`` was.
"""

from __future__ import annotations

import torch

from prunekit.errors import ConfigError


def qmax(bits: int) -> int:
    """Largest integer code of a symmetric ``bits``-bit quantizer (127 for 8 bits).

    Example:
        >>> qmax(8), qmax(4)
        (127, 7)
    """
    if not 2 <= bits <= 8:
        raise ConfigError(f"bits must be in 2..8 for integer quantization, got {bits!r}")
    return 2 ** (bits - 1) - 1


def channel_scales(weight: torch.Tensor, bits: int = 8, axis: int = 0) -> torch.Tensor:
    """One fp32 scale per slice along ``axis``: ``max|w| / qmax``; all-zero slices get 1.0.

    Example:
        >>> channel_scales(torch.tensor([[1.27, -0.5], [0.0, 0.0]]))
        tensor([0.0100, 1.0000])
    """
    w = weight.detach().float().movedim(axis, 0).reshape(weight.shape[axis], -1)
    peak = w.abs().amax(dim=1)
    scale = peak / qmax(bits)
    return torch.where(peak > 0, scale, torch.ones_like(scale))


def _broadcast(scale: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def quantize_symmetric(
    weight: torch.Tensor, bits: int = 8, axis: int = 0, scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``weight`` per channel along ``axis``; return ``(q int8, scale fp32)``.

    Args:
        weight: a float tensor (e.g. a Linear weight ``(out, in)``).
        bits: 2..8; codes lie in ``[-qmax, qmax]``.
        axis: the channel axis (0 = output channels).
        scale: reuse these scales instead of computing them.

    Example:
        >>> q, s = quantize_symmetric(torch.tensor([[1.27, 0.0, -0.635]]))
        >>> q.tolist(), round(float(s[0]), 4)
        ([[127, 0, -64]], 0.01)
    """
    limit = qmax(bits)
    if scale is None:
        scale = channel_scales(weight, bits, axis)
    s = _broadcast(scale, weight.dim(), axis)
    q = torch.round(weight.detach().float() / s).clamp_(-limit, limit).to(torch.int8)
    return q, scale.float()


def dequantize_symmetric(q: torch.Tensor, scale: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """``q * scale`` in fp32, broadcasting one scale per channel along ``axis``.

    Example:
        >>> dequantize_symmetric(torch.tensor([[127, 0]], dtype=torch.int8), torch.tensor([0.5]))
        tensor([[63.5000,  0.0000]])
    """
    return q.float() * _broadcast(scale.float(), q.dim(), axis)
