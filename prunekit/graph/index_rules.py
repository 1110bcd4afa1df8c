"""Label rules for ops that turn values into positions, and for detection ops.

* Selections (``argmax``, ``max(dim)`` indices, ``topk``, ``sort``, ``nonzero``, ``unique``
  ...) return positions: the channels along the dims they search must keep their
  meaning, so the labels varying along those dims are fixed (a max over space leaves
  channels prunable; an argmax over channels does not).
* Sinks (``nms`` ...) produce no channel identity from labelled inputs: their inputs are
  fixed, since pruning would change which boxes they keep.
* Region pooling (``roi_align``, ``roi_pool``) keeps the feature map's channels.

Every rule has the signature of :mod:`prunekit.graph.rules`.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_leaves

from prunekit.graph.labels import const_along
from prunekit.graph.labels import label_of as _label

# ops whose outputs carry no channel identity (indices, selections by score): their
# labelled inputs are fixed - pruning would change which boxes / elements they pick
SINKS = {"nms", "batched_nms", "ps_roi_align", "ps_roi_pool"}
# ops that turn values into positions (indices, selections): channels along the dims
# they search must keep their meaning, so the labels varying along those dims are fixed
SELECTIONS = {"nonzero", "sort", "topk", "argsort", "masked_select", "unique", "_unique",
              "_unique2", "unique_dim", "unique_consecutive", "kthvalue", "searchsorted",
              "bucketize", "nonzero_static"}
INDEX_REDUCTIONS = {"argmax", "argmin", "max", "min", "mode", "median", "nanmedian"}
# region pooling: (N, C, H, W) features + boxes -> (K, C, h, w), channels kept
ROI = {"roi_align", "roi_pool", "_roi_align"}


def fix_varying(ctx, lab: torch.Tensor, dims: list[int]) -> None:
    """Fix the labels that vary along ``dims`` (channel identity the op searches over)."""
    if lab.numel() == 0:
        return
    varying = const_along(lab, dims, keepdim=True) < 0
    if bool(varying.any()):
        _fix(ctx, lab[varying.expand_as(lab)])


def fix_addressed(ctx, lab: torch.Tensor, dim: int) -> None:
    """``select(dim, i)`` reads index ``i`` by its position: where a unit owns a whole
    slice along ``dim`` (one label over the slice, another at the next index: the
    elements of ``weights = nn.Parameter(torch.ones(3))`` read as ``weights[i]``), a cut
    would shift which slice ``i`` is, so those units are fixed. Slices holding several
    units (``qkv[0]``, stacked branches) never shrink as a whole and stay prunable."""
    if lab.dim() == 0 or lab.numel() == 0 or lab.shape[dim] < 2:
        return
    dim %= lab.dim()
    others = [d for d in range(lab.dim()) if d != dim]
    per = const_along(ctx.same_unit(lab), others, keepdim=False) if others else ctx.same_unit(lab)
    if bool((per > 0).any()) and int(per.amax()) != int(per.amin()):
        _fix(ctx, per)


def _fix(ctx, lab: torch.Tensor) -> None:
    """Couple every distinct channel atom in ``lab`` to FIXED."""
    atoms = torch.unique(lab)
    atoms = atoms[atoms > 0]
    if atoms.numel():
        ctx.table.couple(atoms, torch.zeros_like(atoms))


def _search_dims(name: str, args, kwargs, ndim: int) -> list[int]:
    """The dims an index-producing op searches (all dims when it has no ``dim``)."""
    pos = {"sort": 1, "argsort": 1, "topk": 2, "kthvalue": 2, "unique_dim": 1}.get(name)
    dim = kwargs.get("dim", args[pos] if pos is not None and len(args) > pos else None)
    if name in ("sort", "argsort", "topk", "kthvalue") and not isinstance(dim, int):
        dim = -1
    if not isinstance(dim, int) or ndim == 0:
        return list(range(ndim))
    return [dim % ndim]


def selection(ctx, func, args, kwargs, out):
    """Index-producing ops: fix what they search; values keep the other dims' labels."""
    name = func.__name__.split(".")[0]
    lab = _label(ctx, args[0])
    for a in tree_leaves((args[1:], kwargs)):  # e.g. searchsorted's values, masks
        other = _label(ctx, a) if isinstance(a, torch.Tensor) else None
        if other is not None:
            _fix(ctx, other)
    if lab is None or lab.numel() == 0:
        return None
    dims = _search_dims(name, args, kwargs, lab.dim())
    fix_varying(ctx, lab, dims)
    if name in ("sort", "topk", "kthvalue") and isinstance(out, (tuple, list)):
        values = out[0]
        d = dims[0]
        if values.dim() == lab.dim():
            return (lab.narrow(d, 0, values.shape[d]).contiguous(), None)
        return (const_along(lab, [d], keepdim=False), None)
    return None


def sink(ctx, func, args, kwargs, out):
    """Fix every labelled input (their channels cannot be pruned); the output has no labels."""
    for a in tree_leaves((args, kwargs)):
        lab = _label(ctx, a) if isinstance(a, torch.Tensor) else None
        if lab is not None:
            _fix(ctx, lab)
    return None


def roi(ctx, func, args, kwargs, out):
    """Region pooling keeps the feature map's channel dim (dim 1) and its labels."""
    lab = _label(ctx, args[0])
    if lab is None:
        return None
    for a in args[1:]:
        box = _label(ctx, a) if isinstance(a, torch.Tensor) else None
        if box is not None:  # box coordinates computed from pruned channels: keep them
            _fix(ctx, box)
    main = out[0] if isinstance(out, (tuple, list)) else out
    per = const_along(lab, [0] + list(range(2, lab.dim())), keepdim=True)
    mixed = (per < 0) & (lab.amax(dim=[0] + list(range(2, lab.dim())), keepdim=True) >= 0)
    if bool(mixed.any()):
        _fix(ctx, lab)
        return None
    res = per.reshape(1, -1, *([1] * (main.dim() - 2))).expand(main.shape).contiguous()
    if isinstance(out, (tuple, list)):  # roi_pool also returns argmax indices
        return (res,) + (None,) * (len(out) - 1)
    return res
