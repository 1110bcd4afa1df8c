"""Multiply-accumulate counts for one forward pass.

Dense MACs come from ``torch.utils.flop_counter`` (every matmul, convolution and
attention op the forward runs, whatever module it sits in): MACs = FLOPs / 2.
Sparse MACs count only non-zero weights of Linear/Conv layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunekit.masks.sparsify import PRUNABLE_TYPES


def _call(model: nn.Module, example_input: Any) -> None:
    if isinstance(example_input, dict):
        model(**example_input)
    elif isinstance(example_input, (tuple, list)):
        model(*example_input)
    else:
        model(example_input)


def _native_mha_flops(query, key, value, embed_dim, num_head, qkv_weight, qkv_bias,
                      proj_weight, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten._native_multi_head_attention`` (the eval fast path of
    ``nn.MultiheadAttention``, which torch's counter has no formula for): the q/k/v and
    output projections plus the two attention matmuls."""
    b, lq, e = query
    lk = key[1]
    proj = 2 * b * (lq + 2 * lk) * e * e + 2 * b * lq * e * proj_weight[0]
    attn = 2 * b * lq * lk * e * 2
    return int(proj + attn)


#: FLOP formulas for ops ``torch.utils.flop_counter`` does not count (shapes in, FLOPs out).
EXTRA_FLOP_FORMULAS = {torch.ops.aten._native_multi_head_attention: _native_mha_flops}


@contextlib.contextmanager
def frozen_params(model: nn.Module) -> Iterator[None]:
    """Parameters temporarily ``requires_grad=False`` while counting.

    ``FlopCounterMode`` hooks the inputs of every module; under ``no_grad`` a parameter
    passed to a submodule as its input (timm's CaiT class token) requires grad but has no
    gradient function, and the hook fails with "Expected gradient function to be set".

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> with frozen_params(lin): lin.weight.requires_grad
        False
        >>> lin.weight.requires_grad
        True
    """
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts ``EXTRA_FLOP_FORMULAS``."""
    return FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)


def count_macs(model: nn.Module, example_input: Any) -> int:
    """MACs of one forward pass on ``example_input`` (a tensor, tuple or kwargs dict).

    Example:
        >>> count_macs(nn.Linear(3, 2), torch.zeros(1, 3))
        6
        >>> class SelfAttention(nn.MultiheadAttention):
        ...     def forward(self, t):
        ...         return super().forward(t, t, t, need_weights=False)[0]
        >>> count_macs(SelfAttention(8, 2, batch_first=True), torch.zeros(1, 5, 8))
        1680
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), frozen_params(model), flop_counter() as counter:
            _call(model, example_input)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def count_sparse_macs(model: nn.Module, example_input: Any) -> int:
    """MACs counting only non-zero weights in Linear/Conv layers (others as dense).

    Example:
        >>> lin = nn.Linear(4, 2, bias=False)
        >>> with torch.no_grad(): _ = lin.weight[:, :2].zero_()
        >>> count_sparse_macs(lin, torch.zeros(1, 4))
        4
    """
    dense_layer, sparse_layer = [0], [0]
    transposed = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        # every weight is used once per "position": output positions for Linear/Conv,
        # input positions for ConvTranspose
        w = module.weight
        if isinstance(module, nn.Linear):
            positions = output.numel() // w.shape[0]
        elif isinstance(module, transposed):
            positions = inputs[0].numel() // inputs[0].shape[1]
        else:
            positions = output.numel() // output.shape[1]
        dense_layer[0] += positions * w.numel()
        sparse_layer[0] += positions * int((w != 0).sum())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]
    try:
        total = count_macs(model, example_input)
    finally:
        for h in handles:
            h.remove()
    return total - dense_layer[0] + sparse_layer[0]
