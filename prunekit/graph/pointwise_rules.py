"""Label rule of pointwise ops: operands are coupled element by element, with broadcasting.

Where broadcasting pairs a varying label with no partner (a parameter broadcast along a
dim whose labels vary, a tensor without channel identity), the atoms involved are fixed
rather than pruned on their own.
"""

from __future__ import annotations

import torch

from prunekit.graph.atoms import NONE, compress_slices, distinct, fill
from prunekit.graph.dual import Dual, fix, varying_dims
from prunekit.graph.labels import const_along
from prunekit.graph.labels import label_of as _label


def pointwise(ctx, func, args, kwargs, out):
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    outs = out if isinstance(out, (tuple, list)) else (out,)
    main = outs[0]
    if not isinstance(main, torch.Tensor):
        return None
    fits = [t for t in tensors if t.dim() <= main.dim() and _broadcastable(t.shape, main.shape)]
    # labels first: a tensor derived from parameters gets its second labels on first use
    labs = [x for x in (_label(ctx, t) for t in fits) if x is not None]
    if any(t in ctx.second for t in fits):
        result = _with_seconds(ctx, fits, main.shape)
    else:
        result = _combine(ctx, labs, [t.shape for t in fits if t in ctx.lost], main.shape)
    if result is None:
        return None
    return tuple(result for _ in outs) if isinstance(out, (tuple, list)) else result


def _combine(ctx, labs: list[torch.Tensor], lost: list, shape) -> torch.Tensor | None:
    """Couple the operands' labels element by element; the result's labels. ``lost``:
    shapes of operands computed from channels whose identity was lost.

    Dims along which every operand is broadcast (size 1 or a stride-0 view: tokens of a
    linear layer's output) carry the same labels in every slice: the couplings are
    made on one slice and the result is that slice expanded (no full-size labels)."""
    if not labs:
        return None
    nd = len(shape)
    padded = [x.reshape((1,) * (nd - x.dim()) + tuple(x.shape)) for x in labs]
    common = [d for d in range(nd) if shape[d] > 1 and all(
        x.shape[d] == 1 or x.stride(d) == 0 for x in padded)]
    if not common:
        return _combine_dense(ctx, labs, lost, shape)
    small = []
    for x in padded:
        for d in common:
            x = x.narrow(d, 0, 1) if x.shape[d] > 1 else x
        small.append(x)
    small_shape = tuple(1 if d in common else n for d, n in enumerate(shape))
    lost = [tuple(1 if d + nd - len(s) in common else n for d, n in enumerate(s)) for s in lost]
    res = _combine_dense(ctx, small, lost, small_shape)
    return None if res is None else res.expand(shape)


def _combine_dense(ctx, labs: list[torch.Tensor], lost: list, shape) -> torch.Tensor | None:
    lost_labs = [torch.full(s, NONE, dtype=torch.int64) for s in lost]
    if lost_labs:
        _fix_unmatched(ctx, labs + lost_labs, len(shape))
    full = [x for x in labs if tuple(x.shape) == tuple(shape)]
    # broadcast operands: the one whose labels vary along most dims leads (``g * ctx``
    # with a one-channel gate ``g`` and per-channel ``ctx``: ctx's channels are the result's)
    part = sorted((x for x in labs if tuple(x.shape) != tuple(shape)),
                  key=lambda x: -len(_varying(x)))
    ordered = full + part
    result = ordered[0].expand(shape) if ordered[0].shape != shape else ordered[0]
    spread = set(_spread_dims(ordered[0], shape))  # dims every operand so far broadcasts
    for other in ordered[1:]:
        o_dims = _varying(other, len(shape))
        if spread & set(o_dims) and bool((result >= 0).any()):
            _fix(ctx, other)  # an outer product: its second factor's channels stay
        else:
            a, b = _aligned(result, other)
            if a is not None:
                ctx.table.couple(a, b)
            elif not _shared_by_heads(ctx, result, other):
                _fix_unpaired(ctx, other)
        spread &= set(_spread_dims(other, shape))
        if bool((distinct(result) < 0).any()):  # else the result is the first operand's
            result = fill(result.expand(shape), other.expand(shape))
    return result if result.shape == torch.Size(shape) else result.expand(shape)


def _spread_dims(lab: torch.Tensor, shape) -> list[int]:
    """Dims (of ``shape``) along which ``lab`` is broadcast."""
    full = (1,) * (len(shape) - lab.dim()) + tuple(lab.shape)
    return [d for d in range(len(shape)) if full[d] == 1 and shape[d] > 1]


def _varying(lab: torch.Tensor, nd: int | None = None) -> list[int]:
    """Dims (counted in ``nd`` dims, right-aligned) along which a channel label changes."""
    nd = lab.dim() if nd is None else nd
    small = compress_slices(lab)[0] if lab.numel() > 4096 else lab
    return [d + nd - lab.dim() for d in varying_dims(small)]


def _with_seconds(ctx, tensors: list[torch.Tensor], shape):
    """Operands with second labels (``prunekit.graph.dual``): each label tensor pairs
    with the operands' labels that index the same dims; a label tensor indexing dims
    along which an operand without such labels is full is fixed (its channels cannot
    shrink alone)."""
    nd = len(shape)
    holder = next(t for t in tensors if t in ctx.second)
    sec = ctx.second[holder]

    def dims_of(lab):  # the dims a unit of ``lab`` removes slices of (heads aliased)
        return varying_dims(ctx.same_unit(lab).reshape((1,) * (nd - lab.dim()) + tuple(lab.shape)))

    s_dims = dims_of(sec)
    firsts, lost_first, seconds = [], [], [sec]  # lost_first: shapes
    members: dict[int, set[int]] = {0: set(), 1: {id(holder)}}
    for t in tensors:
        lab = _label(ctx, t)
        if t is not holder and t in ctx.second:
            fix(ctx, ctx.second[t])  # a second pair of channel sets: not followed
        if lab is None:
            if t in ctx.lost:
                lost_first.append(t.shape)
            continue
        dims = dims_of(lab)
        if t is not holder and dims and dims == s_dims:
            seconds.append(lab)
            members[1].add(id(t))
        else:
            firsts.append(lab)
            members[0].add(id(t))
    primary = _combine(ctx, firsts, lost_first, shape)
    second = _combine(ctx, seconds, [], shape)
    for k, lab in ((0, primary), (1, second)):
        dims = dims_of(lab) if lab is not None else []
        for t in tensors:
            full = (1,) * (nd - t.dim()) + tuple(t.shape)
            if id(t) not in members[k] and any(full[d] > 1 for d in dims):
                fix(ctx, lab)
                break
    if primary is None:
        return second
    return primary if second is None else Dual(primary, second)


def _fix_unmatched(ctx, labs: list[torch.Tensor], nd: int) -> None:
    """Operands that meet along a real (size > 1) dim must lose the same indices of it.
    Where one operand's slice has no channel identity at all (attention scores computed
    from channels), the other's labels that vary along that dim cannot go: fix them (a
    relative position bias added to the scores)."""
    full = [x.reshape((1,) * (nd - x.dim()) + tuple(x.shape)) for x in labs]
    # (any NONE, all NONE, any channel) per operand; an all-NONE operand (scores) is empty
    # along every dim, so what it fixes in ``a`` depends on ``a`` and the dim only
    stats = [(bool((x < 0).any()), bool((x < 0).all()), bool((x > 0).any())) for x in full]
    compact: dict[int, torch.Tensor] = {}
    done: set[tuple[int, int]] = set()
    for bi, b in enumerate(full):
        if not stats[bi][0]:
            continue
        for ai, a in enumerate(full):
            if ai == bi or not stats[ai][2]:
                continue
            for d in range(nd):
                if a.shape[d] == 1 or b.shape[d] == 1:
                    continue
                if stats[bi][1]:
                    if (ai, d) in done:
                        continue
                    done.add((ai, d))
                    if ai not in compact:  # repeated slices change nothing here
                        compact[ai] = compress_slices(a)[0] if a.numel() > 4096 else a
                    ac = compact[ai]
                    varying = const_along(ac, [d], keepdim=True) < 0
                    if bool(varying.any()):
                        _fix(ctx, ac[varying.expand_as(ac)])
                    continue
                others = [k for k in range(nd) if k != d]
                empty = b.amax(dim=others) < 0 if others else b < 0
                varying = const_along(a, [d], keepdim=True) < 0
                if not bool(empty.any()) or not bool(varying.any()):
                    continue
                idx = torch.nonzero(empty).reshape(-1)
                _fix(ctx, a.index_select(d, idx)[varying.expand_as(a).index_select(d, idx)])


def _fix(ctx, picked: torch.Tensor) -> None:
    atoms = torch.unique(picked)
    atoms = atoms[atoms > 0]
    if atoms.numel():
        ctx.table.couple(atoms, torch.zeros_like(atoms))


def _fix_unpaired(ctx, other: torch.Tensor) -> None:
    """``other`` is broadcast along a dim where the full operand's labels vary (XCiT's
    per-head temperature times channel-by-channel attention scores, FocalNet's one-channel
    gate times every context channel): no unit of the full operand matches one of its
    slices, so its channels cannot go (removing a gate's only channel would leave nothing
    to multiply by)."""
    _fix(ctx, other)


def _shared_by_heads(ctx, full: torch.Tensor, other: torch.Tensor) -> bool:
    """``other`` broadcast over the heads of a split channel dim (a rotary ``cos`` /
    ``sin`` table, a per-dim scale): it shrinks with the head dims in head-dims mode and
    stays whole in whole-heads mode (``prunekit.graph.head_modes``). False when ``full``
    comes from no split."""
    from prunekit.graph.head_modes import DIMS, HEADS

    split = ctx.heads.owner(full)
    if split is None:
        return False
    o = other.reshape((1,) * (full.dim() - other.dim()) + tuple(other.shape))
    # broadcast across heads (not only across the positions of one head: a per-head
    # table such as XCiT's temperature stays whole through _fix_unpaired)
    spread = [d for d in range(full.dim()) if o.shape[d] == 1 and full.shape[d] > 1]
    small = compress_slices(full)[0] if full.numel() > 4096 else full
    heads = ctx.heads.head_of(split, small)
    if not any(_varies_along(heads, d) for d in spread):
        return False
    ctx.heads.couple(split, DIMS, full, o.expand(full.shape))
    ctx.heads.fix(split, HEADS, other)
    return True


def _varies_along(heads: torch.Tensor, d: int) -> bool:
    """Whether two owned elements of ``heads`` along dim ``d`` lie in different heads."""
    first = heads.narrow(d, 0, 1)
    return bool(((heads != first) & (heads >= 0) & (first >= 0)).any())


def _broadcastable(small, big):
    for s, b in zip(reversed(small), reversed(big)):
        if s != b and s != 1:
            return False
    return True


def _aligned(full: torch.Tensor, other: torch.Tensor):
    """Pairs of labels that coincide element-wise; dims where ``other`` is broadcast
    are only coupled if ``full`` is constant there (a shared scalar couples nothing)."""
    o = other.reshape((1,) * (full.dim() - other.dim()) + tuple(other.shape))
    f = full
    for d in range(full.dim()):
        if o.shape[d] == 1 and f.shape[d] > 1:
            c = const_along(f, [d], keepdim=True)
            if bool((c < 0).any() & (f.narrow(d, 0, 1) >= 0).any()):
                if _positions(f, d):
                    continue  # each slice is coupled with ``other`` on its own
                return None, None
            f = c
    return f, o.expand(f.shape)


def _positions(f: torch.Tensor, d: int) -> bool:
    """Whether the labels of ``f`` vary along ``d`` as along a token / pixel dim holding
    a few different tensors (a class token's attention output concatenated before the
    patch tokens, then scaled by a LayerScale ``gamma``): slices repeat their neighbour,
    unlike a channel dim's, and none lacks channel identity. A parameter broadcast along
    it then scales the same channel of every slice.

    Example:
        >>> _positions(torch.tensor([[1, 2], [3, 4], [3, 4]]), 0)
        True
        >>> _positions(torch.tensor([[1, 2], [3, 4]]), 0)
        False
    """
    if bool((f < 0).any()):
        return False
    distinct = compress_slices(f, dims=[d])[0].shape[d]
    return 1 < distinct < f.shape[d]
