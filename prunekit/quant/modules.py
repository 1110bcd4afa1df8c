"""CPU inference with int8 weights.

Two paths, both keeping pruned weights exactly zero:

- ``kernel="dequant"`` (default): ``Int8Linear`` / ``Int8Conv2d`` store the int8 codes
  and per-channel scales (4x less weight memory) and compute in fp32 from
  ``q * scale``; outputs equal the fake-quantized float model's.
- ``kernel="dynamic"``: ``torch.ao`` dynamic-quantized ``Linear`` (fbgemm/x86 int8 GEMM,
  activations quantized on the fly) built from the same int8 codes; Conv layers keep the
  ``Int8Conv2d`` path. Faster on large Linear layers, outputs approximate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config.base import check_choice
from prunekit.masks.parametrize import plain_copy
from prunekit.quant.int8 import dequantize_symmetric, quantize_symmetric


class Int8Linear(nn.Module):
    """A Linear layer holding int8 weights ``(out, in)`` and one fp32 scale per output.

    Example:
        >>> m = Int8Linear.from_float(nn.Linear(4, 2))
        >>> m.weight_int8.dtype, m(torch.zeros(1, 4)).shape
        (torch.int8, torch.Size([1, 2]))
    """

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight_int8", weight_int8.to(torch.int8))
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_float(cls, linear: nn.Linear, scale: torch.Tensor | None = None) -> Int8Linear:
        q, s = quantize_symmetric(linear.weight, 8, 0, scale)
        return cls(q, s, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, dequantize_symmetric(self.weight_int8, self.scale), self.bias)


class Int8Conv2d(nn.Module):
    """A Conv2d holding int8 weights and one fp32 scale per output channel.

    Example:
        >>> m = Int8Conv2d.from_float(nn.Conv2d(1, 2, 3, padding=1))
        >>> m(torch.zeros(1, 1, 4, 4)).shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, conv: nn.Conv2d, weight_int8: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.padding_mode = conv.padding_mode
        self._reversed_padding = conv._reversed_padding_repeated_twice
        self.register_buffer("weight_int8", weight_int8.to(torch.int8))
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().float().clone())

    @classmethod
    def from_float(cls, conv: nn.Conv2d, scale: torch.Tensor | None = None) -> Int8Conv2d:
        q, s = quantize_symmetric(conv.weight, 8, 0, scale)
        return cls(conv, q, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize_symmetric(self.weight_int8, self.scale)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding, mode=self.padding_mode)
            return F.conv2d(x, w, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _dynamic_linear(linear: nn.Linear, scale: torch.Tensor | None) -> nn.Module:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    q, s = quantize_symmetric(linear.weight, 8, 0, scale)
    qweight = torch._make_per_channel_quantized_tensor(q, s.double(), torch.zeros(len(s), dtype=torch.long), 0)
    out = DynamicLinear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
    out.set_weight_bias(qweight, None if linear.bias is None else linear.bias.detach().float())
    return out


def to_int8_inference(model: nn.Module, record: dict | None = None, kernel: str = "dequant") -> nn.Module:
    """Return a copy of ``model`` whose Linear/Conv2d layers hold int8 weights.

    Args:
        model: a float model (masks are baked into the copy; the original is untouched).
        record: a ``QuantRecord`` from ``quantize_`` (int8 scheme) to reuse its scales, so
            the int8 codes are exactly the ones stored; None computes scales here.
        kernel: ``"dequant"`` or ``"dynamic"`` (see the module docstring).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> type(to_int8_inference(net)[0]).__name__
        'Int8Linear'
    """
    check_choice("kernel", kernel, ("dequant", "dynamic"))
    out = plain_copy(model).eval()
    record = record or {}
    replacements = []
    for name, module in out.named_modules():
        lq = record.get(name)
        scale = lq.params if lq is not None and lq.scheme == "int8" else None
        if isinstance(module, nn.Linear):
            new = _dynamic_linear(module, scale) if kernel == "dynamic" else Int8Linear.from_float(module, scale)
        elif isinstance(module, nn.Conv2d):
            new = Int8Conv2d.from_float(module, scale)
        else:
            continue
        replacements.append((name, new))
    for name, new in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        if not child:
            return new
        setattr(parent, child, new)
    return out
