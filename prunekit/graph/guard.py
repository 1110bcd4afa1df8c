"""Catch forwards that read stale sizes after a cut.

A reshape that splits a channel dim (``(B, N, 768) -> (B, N, 12, 64)``) must keep its
leading counts after pruning: the tracer removes the same positions in every head, so
12 heads stay 12 heads of a smaller size. A module whose forward reshapes with a size
stored at construction (``view(B, N, -1, self.head_dim)``) and that no surgery rule
updates would silently regroup the channels into a different number of heads: the
model runs, the output shape is right, and the result is wrong. The tracer records the
leading counts of every such split (per module path, by the order of reshapes within
that module); after the cut the same forward is replayed shape-only and compared.

Example:
    >>> import torch
    >>> splits = {("attn", 0): ((2, 4),)}
    >>> stale_splits(splits, {("attn", 0): (1, 8, 2, 16)}, {"attn": 1}, {"attn": 1})
    ["module 'attn' reshapes a pruned dim into 2 slices along dim 2, where it had 4"]
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from prunekit.graph.shapes import ShapeOnly

VIEWISH = {"view", "_unsafe_view", "reshape", "_reshape_alias"}


@contextlib.contextmanager
def module_paths(model: nn.Module) -> Iterator[list[str]]:
    """Yield a stack whose top is the qualified name of the module now running."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[str] = []

    def enter(module, _inputs):
        stack.append(names.get(id(module), type(module).__name__))

    def leave(_module, _inputs, _output):
        if stack:
            stack.pop()

    pre = torch.nn.modules.module.register_module_forward_pre_hook(enter)
    post = torch.nn.modules.module.register_module_forward_hook(leave)
    try:
        yield stack
    finally:
        pre.remove()
        post.remove()


@contextlib.contextmanager
def _onednn_off() -> Iterator[None]:
    """oneDNN disabled for the block (``torch.backends.mkldnn.flags`` without its TF32
    warning), restored after."""
    was = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(was)


@contextlib.contextmanager
def traced_forward(model: nn.Module) -> Iterator[list[str]]:
    """The setting of every forward whose ops are followed (trace and replay): no grad,
    MHA's fused fast path off (it hides the head structure), oneDNN off (its fused LSTM
    kernel hides the gates; without it ``nn.LSTM`` runs as matmuls and pointwise gates),
    module paths tracked."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with module_paths(model) as stack, torch.no_grad(), _onednn_off():
            yield stack
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class _ViewShapes(TorchDispatchMode):
    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.counts: dict[str, int] = defaultdict(int)
        self.shapes: dict[tuple[str, int], tuple[int, ...]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] in VIEWISH and isinstance(out, torch.Tensor):
            path = (self.stack[-1] if self.stack else "") or "<model>"
            self.shapes[(path, self.counts[path])] = tuple(out.shape)
            self.counts[path] += 1
        return out


def record_view_shapes(model: nn.Module, call: Any) -> tuple[dict, dict, Any]:
    """Run ``call()`` shape-only; return ({(module path, k): shape of its k-th reshape},
    {module path: number of reshapes}, call's result). MHA's fused fast path is off, as
    when tracing."""
    with traced_forward(model) as stack, ShapeOnly():
        recorder = _ViewShapes(stack)
        with recorder:
            out = call()
    return recorder.shapes, dict(recorder.counts), out


def stale_splits(splits: dict[tuple[str, int], tuple[tuple[int, int], ...]],
                 shapes: dict[tuple[str, int], tuple[int, ...]],
                 counts_before: dict[str, int], counts_after: dict[str, int]) -> list[str]:
    """Problems: splits whose leading counts changed. Modules whose number of reshapes
    changed (a shape-dependent code path) are not compared."""
    problems = []
    for (path, k), dims in splits.items():
        if counts_before.get(path) != counts_after.get(path) or (path, k) not in shapes:
            continue
        shape = shapes[(path, k)]
        for dim, size in dims:
            now = shape[dim] if dim < len(shape) else None
            if now != size:
                problems.append(f"module '{path}' reshapes a pruned dim into {now} slices "
                                f"along dim {dim}, where it had {size}")
                break
    return problems
