"""Second labels: activations indexed by two independent channel sets.

A contraction can produce a tensor whose rows and columns belong to different channels:
XCiT's cross-covariance attention ``q^T k`` is ``(head_dim of q) x (head_dim of k)``,
an SSM state ``x @ B^T`` is ``(channels) x (states)``, an MLP-Mixer token MLP output is
``(channels) x (hidden tokens)``. One label per element cannot say that element
``(i, j)`` goes when *either* channel ``i`` or channel ``j`` goes, so such a tensor carries
its *primary* labels (the tracer's usual per-element labels) and a *second* label
tensor of the same shape (``TraceContext.second``). Every op either follows both
(views, permutes, pointwise ops, softmax, reductions, contractions, 1x1 convolutions)
or, where it does not, the channels of the second labels are fixed (never pruned), so a
cut can never leave the two channel sets inconsistent.

Example:
    >>> import torch
    >>> lab = torch.tensor([[1, 2], [1, 2]])
    >>> varying_dims(lab), varying_dims(lab.t())
    ([1], [0])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_leaves

from prunekit.graph.atoms import NONE
from prunekit.graph.labels import const_along

# ops the second labels follow like the primary ones (rearrangements of elements)
_MOVING = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "permute", "transpose", "t",
    "expand", "slice", "select", "squeeze", "unsqueeze", "clone", "contiguous", "alias",
    "detach", "lift_fresh", "flip", "roll", "narrow", "movedim", "unflatten", "flatten",
    "split", "split_with_sizes", "chunk", "unbind", "_to_copy", "expand_as", "view_as",
    "swapaxes", "constant_pad_nd", "repeat",
}


@dataclass(frozen=True)
class Dual:
    """The labels a rule returns for a tensor indexed by two channel sets."""

    primary: torch.Tensor
    second: torch.Tensor


def varying_dims(lab: torch.Tensor) -> list[int]:
    """Dims along which some labelled slice changes label (the dims it indexes)."""
    out = []
    for d in range(lab.dim()):
        if lab.shape[d] > 1 and bool(((const_along(lab, [d], True) < 0)
                                       & (lab.amax(dim=d, keepdim=True) >= 0)).any()):
            out.append(d)
    return out


def fix(ctx, lab: torch.Tensor | None) -> None:
    """Couple every channel atom of ``lab`` to FIXED (they are never pruned)."""
    if lab is None or lab.numel() == 0:
        return
    atoms = torch.unique(lab)
    atoms = atoms[atoms > 0]
    if atoms.numel():
        ctx.table.couple(atoms, torch.zeros_like(atoms))


def seconds_in(ctx, args, kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tensor, its second labels) for the tensor arguments that have some."""
    found, seen = [], set()
    for a in tree_leaves((args, kwargs)):
        if isinstance(a, torch.Tensor) and id(a) not in seen:
            seen.add(id(a))
            sec = ctx.second.get(a)
            if sec is not None:
                found.append((a, sec))
    return found


def _moved(func, name: str, sec: torch.Tensor, args, kwargs, out):
    if name in ("view", "_unsafe_view", "reshape", "_reshape_alias", "view_as"):
        return sec.reshape(out.shape)
    if name in ("_to_copy", "clone", "contiguous", "alias", "detach", "lift_fresh"):
        return sec
    if name == "constant_pad_nd":
        return torch.constant_pad_nd(sec, args[1], NONE)
    kw = {k: v for k, v in kwargs.items() if k not in ("dtype", "layout", "device",
                                                        "pin_memory", "memory_format")}
    return func(sec, *args[1:], **kw)


def carry(ctx, func, name: str, args, kwargs, out, families) -> list:
    """The second labels of ``out`` [(output tensor, labels)]: those of the op's input
    where the op keeps elements in place or moves them (``families``: (same-shape ops,
    reductions)); fixed otherwise. The tracer calls it after every op whose rule does
    not handle second labels."""
    found = seconds_in(ctx, args, kwargs)
    if not found:
        return []
    same_shape, reductions = families
    src, sec = found[0]
    outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,))]
    try:
        if len(found) == 1 and src is args[0] and name in _MOVING:
            res = _moved(func, name, sec, args, kwargs, out)
            res = res if isinstance(res, (tuple, list)) else (res,)
            return _fitted(ctx, outs, res)
        if len(found) == 1 and src is args[0] and name in same_shape:
            return _fitted(ctx, outs, [sec if isinstance(o, torch.Tensor) and o.shape == sec.shape
                                       else None for o in outs])
        if len(found) == 1 and src is args[0] and name in reductions:
            return _fitted(ctx, outs, _reduce(ctx, func, sec, args, kwargs, outs))
    except Exception:  # noqa: BLE001 - an op the labels cannot follow: fix them below
        pass
    for _t, s in found:
        fix(ctx, s)
    return []


def _reduce(ctx, func, sec, args, kwargs, outs) -> tuple:
    from prunekit.graph.rules import reduction

    class _Only:  # the reduction rule, run on the second labels alone
        def __init__(self, inner):
            self.inner, self.table = inner, inner.table

        def lab(self, t):
            return sec if t is args[0] else None

        def same_unit(self, lab):
            return self.inner.same_unit(lab)

    res = reduction(_Only(ctx), func, args, kwargs, tuple(outs) if len(outs) > 1 else outs[0])
    return res if isinstance(res, tuple) else (res,)


def _fitted(ctx, outs, seconds) -> list:
    pairs = []
    for out, sec in zip(outs, seconds):
        if not isinstance(out, torch.Tensor) or sec is None:
            continue
        if tuple(sec.shape) != tuple(out.shape):
            if sec.numel() != out.numel():
                fix(ctx, sec)
                continue
            sec = sec.reshape(out.shape)
        if bool((sec > 0).any()):
            pairs.append((out, sec.contiguous()))
    return pairs
