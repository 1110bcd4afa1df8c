"""Axes of the ops that derive weights from parameters (see ``prunekit.graph.derived``).

``derive(ctx, name, func, args, kwargs, out)`` returns the axes of each output (a tuple
for multi-output ops) or None when the op is not one of these, or its axes do not line
up (the ordinary label rule then runs). Couplings between aligned axes and inexact
marks of reduced axes are appended to ``ctx.pending`` as actions: they are carried out
only if a weight op reads the derived tensor (``Derived.commit``), so a computation on
parameters that ends elsewhere (a position-bias MLP) is traced exactly as before.
"""

from __future__ import annotations

import torch

from prunekit.graph.derived import (
    BATCH_NORMS,
    CONTRACTIONS,
    NORM_REDUCTIONS,
    Axes,
    Axis,
    axes_of,
    view_axes,
)


def _atoms(table, ax: Axis) -> torch.Tensor:
    return table.dim_atoms(ax[0], ax[1], ax[2])


def _couple(ctx, a: tuple[Axis, ...], b: tuple[Axis, ...]) -> bool:
    """Couple two dims' axes one to one (recorded in ``ctx.pending``, done when a weight
    op reads the result: ``Derived.commit``); False when their structures differ."""
    if a == b or not a or not b:
        return True
    if len(a) == 1 and a[0][0] == "" or len(b) == 1 and b[0][0] == "":
        return True  # no identity on one side (an expanded dim)
    if [x[2] for x in a] != [x[2] for x in b]:
        return False
    for x, y in zip(a, b):
        if x[0] and y[0]:
            ctx.pending.append(lambda x=x, y=y: _link(ctx, x, y))
    return True


def _root(links: dict, key: tuple[str, int]) -> tuple[str, int]:
    while links.get(key, key) != key:
        key = links[key]
    return key


def _link(ctx, x: Axis, y: Axis) -> None:
    """Couple two parameter axes, and remember that they are one (see ``finish``)."""
    ctx.table.couple(_atoms(ctx.table, x), _atoms(ctx.table, y))
    links = ctx.axis_links
    rx, ry = _root(links, x[:2]), _root(links, y[:2])
    if rx != ry:
        links[rx] = ry


SUM_LIKE = {"sum", "norm", "linalg_vector_norm"}


def _inexact(ctx, dims: tuple[tuple[Axis, ...], ...], sum_like: bool = False) -> None:
    """Removing an index of these axes changes a normaliser, even when it is dead. A sum
    (a norm, a contraction) over the axes a unit produces is unchanged when that unit's
    slices are zero: those are decided once producers are known (``finish``)."""
    for dim in dims:
        for ax in dim:
            if ax[0] and sum_like:
                ctx.pending.append(lambda ax=ax: ctx.sum_reduced.add(ax))
            elif ax[0]:
                ctx.pending.append(lambda t=ctx.table, ax=ax: t.mark_inexact(_atoms(t, ax)))


def finish(ctx) -> None:
    """Mark inexact the summed-over axes on no producer's side (a consumer's input dim,
    and the vectors coupled to it: its weights stay non-zero when the channel it reads is
    dead); a sum over the rows a dead unit produces (``u^T W v``) is unchanged."""
    if not ctx.sum_reduced:
        return
    table, links = ctx.table, ctx.axis_links
    producing = {_root(links, (b.tensor, b.dim)) for b in table.blocks
                 if b.kind == "dim" and b.producer}
    for ax in sorted(ctx.sum_reduced):
        if _root(links, ax[:2]) not in producing:
            table.mark_inexact(_atoms(table, ax))


def _named(dim: tuple[Axis, ...]) -> bool:
    return bool(dim) and all(a[0] for a in dim)


def pointwise(ctx, operands: list[tuple[torch.Tensor, Axes | None]], shape) -> Axes | None:
    """Broadcast operands (axes None: a tensor without labels) to ``shape``."""
    nd = len(shape)
    out: list[tuple[Axis, ...]] = []
    for k in range(nd):
        chosen: tuple[Axis, ...] = ()
        for t, axes in operands:
            j = k - (nd - t.dim())
            if j < 0 or t.shape[j] != shape[k] or shape[k] == 1 or axes is None:
                continue
            dim = axes[j]
            if not _couple(ctx, chosen, dim):
                return None
            if not _named(chosen) and _named(dim) or not chosen:
                chosen = dim
        if shape[k] > 1 and not chosen:
            chosen = (("", -1, shape[k]),)
        out.append(chosen)
    return tuple(out)


def _dims_arg(name, args, kwargs, nd: int) -> list[int]:
    first = 2 if name in ("linalg_vector_norm", "norm") else 1
    dims = kwargs.get("dim", args[first] if len(args) > first else None)
    if isinstance(dims, int):
        dims = [dims]
    if not dims or not all(isinstance(d, int) for d in dims):
        return list(range(nd))
    return [d % max(nd, 1) for d in dims]


def _keepdim(name, args, kwargs) -> bool:
    first = 2 if name in ("linalg_vector_norm", "norm") else 1
    k = kwargs.get("keepdim", args[first + 1] if len(args) > first + 1 else False)
    return bool(k) if isinstance(k, bool) else False


def reduction(ctx, name, args, kwargs, axes: Axes) -> Axes:
    nd = len(axes)
    dims = _dims_arg(name, args, kwargs, nd)
    _inexact(ctx, tuple(axes[d] for d in dims), name in SUM_LIKE)
    keep = _keepdim(name, args, kwargs)
    return tuple(() if d in dims else axes[d] for d in range(nd) if keep or d not in dims)


def batch_norm(ctx, args, axes: Axes, out) -> tuple | None:
    """Batch norm of a weight (weight standardisation): per channel (dim 1), normalised
    over the other dims; its affine weight / bias follow the channels."""
    if len(axes) < 2:
        return None
    training = next((a for a in args[5:] if isinstance(a, bool)), True)
    if training:
        _inexact(ctx, tuple(axes[d] for d in range(len(axes)) if d != 1))
    for t in args[1:5]:
        other = axes_of(ctx, t)
        if other is not None and len(other) == 1 and not _couple(ctx, axes[1], other[0]):
            return None
    c = axes[1]
    return tuple(axes if i == 0 else ((c,) if isinstance(o, torch.Tensor) and o.dim() == 1
                                      and o.shape[0] > 1 else None)
                 for i, o in enumerate(out))


def contraction(ctx, name, args, out) -> Axes | None:
    bias = args[0] if name == "addmm" else None
    a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
    xa, xb = axes_of(ctx, a), axes_of(ctx, b)
    if xa is None and xb is None:
        return None
    xa = xa if xa is not None else tuple((("", -1, s),) if s > 1 else () for s in a.shape)
    xb = xb if xb is not None else tuple((("", -1, s),) if s > 1 else () for s in b.shape)
    if name in ("dot", "vdot"):
        k_a, k_b, res = xa[0], xb[0], ()
    elif name == "mv":
        k_a, k_b, res = xa[1], xb[0], (xa[0],)
    elif name == "bmm":
        if not _couple(ctx, xa[0], xb[0]):
            return None
        k_a, k_b, res = xa[2], xb[1], (xa[0], xa[1], xb[2])
    else:
        k_a, k_b, res = xa[1], xb[0], (xa[0], xb[1])
    if not _couple(ctx, k_a, k_b):
        return None
    _inexact(ctx, (k_a, k_b), sum_like=True)
    if bias is not None:
        return pointwise(ctx, [(out, res), (bias, axes_of(ctx, bias))], tuple(out.shape))
    return res


def weight_norm(ctx, args, out) -> tuple | None:
    """``_weight_norm_interface(v, g, dim)``: ``w = g * v / ||v||`` over the other dims."""
    v, g, dim = args[0], args[1], (args[2] if len(args) > 2 else 0)
    xv, xg = axes_of(ctx, v), axes_of(ctx, g)
    if xv is None:
        return None
    dim = dim % v.dim()
    if xg is not None and len(xg) == len(xv) and not _couple(ctx, xv[dim], xg[dim]):
        return None
    _inexact(ctx, tuple(xv[d] for d in range(len(xv)) if d != dim), sum_like=True)
    norms = tuple(xv[d] if d == dim else () for d in range(len(xv)))
    return xv, norms if out[1].dim() == len(xv) else None


def derive(ctx, name: str, func, args, kwargs, out):
    """Axes of ``func``'s outputs, or None (see the module docstring)."""
    from prunekit.graph.pointwise_rules import pointwise as pointwise_rule
    from prunekit.graph.rules import family_rule

    main = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(main, torch.Tensor):
        return None
    first = axes_of(ctx, args[0]) if args and isinstance(args[0], torch.Tensor) else None
    if name in BATCH_NORMS:
        return batch_norm(ctx, args, first, out) if first is not None else None
    if name in CONTRACTIONS:
        return contraction(ctx, name, args, main)
    if name == "_weight_norm_interface":
        return weight_norm(ctx, args, out)
    if first is not None and name in NORM_REDUCTIONS:
        res = reduction(ctx, name, args, kwargs, first)
        return tuple(res for _ in out) if isinstance(out, (tuple, list)) else res
    if first is not None and name in ("view", "_unsafe_view", "reshape", "_reshape_alias", "t",
                                      "transpose", "permute", "expand", "_to_copy", "clone",
                                      "contiguous", "alias", "detach", "lift_fresh", "squeeze",
                                      "unsqueeze", "flatten", "unflatten"):
        return view_axes(name, args, first, tuple(main.shape))
    if family_rule(name, func) is pointwise_rule:
        tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
        ops = [(t, axes_of(ctx, t)) for t in tensors if t.dim() <= main.dim()]
        res = pointwise(ctx, ops, tuple(main.shape))
        if res is None:
            return None
        return tuple(res for _ in out) if isinstance(out, (tuple, list)) else res
    return None
