"""Which label rule the tracer uses for an aten op, and which ops a forward runs.

``rule_for_op("aten.convolution.default")`` names the rule (or ``"error"`` for ops that
raise a precise ``UnsupportedOpError`` on purpose, ``None`` for ops with no rule: the
tracer would stop there). ``ops_in_forward(model, x)`` lists the aten ops that receive
floating-point or bool tensors (the ones that can carry channel labels) in a forward run
the way the tracer runs it. Together they show what a new torch release adds.

Example:
    >>> rule_for_op("aten.add.Tensor"), rule_for_op("aten.im2col.default")
    ('pointwise', 'im2col')
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from prunekit.graph import rules
from prunekit.graph.guard import traced_forward
from prunekit.graph.unfold_rules import RNN_KERNELS


def _resolve(op: str):
    """``"aten.name.overload"`` -> the OpOverload (None if this torch has no such op)."""
    parts = op.split(".")
    if len(parts) != 3 or parts[0] != "aten":
        return None
    packet = getattr(torch.ops.aten, parts[1], None)
    return getattr(packet, parts[2], None) if packet is not None else None


def rule_for_op(op: str) -> str | None:
    """Name of the label rule the tracer applies to ``op`` (``"aten.<name>.<overload>"``):
    a weight rule, a family rule, ``"ignored"`` / ``"fresh"`` (no labels flow),
    ``"error"`` (a deliberate, precise error), or None (no rule)."""
    from prunekit.graph.tracer import WEIGHT_RULES

    name = op.split(".")[1] if op.startswith("aten.") else op
    if name in RNN_KERNELS:
        return "error"
    if name in WEIGHT_RULES:
        return WEIGHT_RULES[name].__name__
    if name in rules.IGNORED:
        return "ignored"
    if name in rules.FRESH:
        return "fresh"
    func = _resolve(op)
    if func is None:
        return None
    rule = rules.family_rule(name, func)
    return rule.__name__ if rule is not None else None


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(isinstance(a, torch.Tensor) and (a.is_floating_point() or a.dtype == torch.bool)
               for a in tree_leaves((args, kwargs))):
            self.seen.add(str(func))
        return func(*args, **kwargs)


def ops_in_forward(model: nn.Module, example_input: Any) -> set[str]:
    """aten ops (``"aten.<name>.<overload>"``) a forward runs on float / bool tensors,
    with the tracer's settings (eval, no grad, MHA fast path and oneDNN off)."""
    model.eval()
    recorder = _Ops()
    with traced_forward(model), recorder:
        model(example_input)
    return recorder.seen
