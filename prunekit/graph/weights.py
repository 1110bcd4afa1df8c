"""Label rules for ops that own weights: convolution, norms, embedding, PReLU, and
fused attention (matrix products: ``prunekit.graph.contraction``). They know which
weight dim is produced (a new channel identity), which is consumed (coupled to the
incoming channels), and which is followed (norms)."""

from __future__ import annotations

import torch

from prunekit.graph.derived import WeightDims
from prunekit.graph.labels import ParamRef, const_along, per_index_pairs


def _mat(ctx, t):
    lab = ctx.lab(t)
    if isinstance(lab, ParamRef):
        return lab.materialize(ctx.table)
    return lab


def _plain_param(ctx, t):
    """The ParamRef of a parameter used as-is (possibly through clone/detach)."""
    ref = ctx.lab(t) if isinstance(t, torch.Tensor) else None
    if isinstance(ref, ParamRef) and ref.dims is not None and list(ref.dims) == list(
        range(len(ref.base_shape))
    ):
        return ref
    return None


def _channel_out(labels: torch.Tensor, shape, dim: int) -> torch.Tensor:
    view = [1] * len(shape)
    view[dim] = -1
    return labels.view(view).expand(shape)  # broadcast over tokens / pixels: no copy


def convolution(ctx, func, args, kwargs, out):
    x, w, b = args[0], args[1], args[2]
    transposed, groups = bool(args[6]), int(args[8])
    wd = WeightDims(ctx, w)  # a parameter, or a weight derived from parameters
    xl = _mat(ctx, x)
    if not wd.ok or not (wd.has(0) and wd.has(1)):
        if xl is not None and bool((xl >= 0).any()):
            raise ctx.unsupported(
                func, "convolution whose weight is computed by ops prunekit cannot trace "
                "back to the parameters that own its channels")
        return None
    table = ctx.table
    cdim = 1 if x.dim() == w.dim() else 0
    cout = out.shape[cdim]
    if not transposed:
        o_atoms = wd.atoms(0, producer=True)
        ci = w.shape[1]
        if xl is not None:
            idx, lab = per_index_pairs(xl, cdim)
            if groups == 1:
                table.couple(wd.atoms(1)[idx], lab)
            elif ci == 1:
                mult = cout // groups
                table.couple(o_atoms.view(groups, mult)[idx], lab[:, None])
            else:
                table.couple(wd.atoms(1)[idx % ci], lab)
        if groups > 1 and ci > 1:
            co = cout // groups
            table.couple(o_atoms.view(groups, co), o_atoms[:co][None, :])
        out_labels = o_atoms
    else:
        if groups != 1:
            if xl is not None and bool((xl >= 0).any()):
                raise ctx.unsupported(func, "grouped transposed convolution")
        per_group = wd.atoms(1, producer=True)
        out_labels = per_group.repeat(groups)
        if xl is not None and groups == 1:
            idx, lab = per_index_pairs(xl, cdim)
            table.couple(wd.atoms(0)[idx], lab)
    bd = WeightDims(ctx, b) if isinstance(b, torch.Tensor) else None
    if bd is not None and bd.ok and bd.has(0):
        table.couple(bd.atoms(0), out_labels)
    return _channel_out(out_labels, out.shape, cdim)


def _follow_channel(ctx, lab, dim, tensors):
    """Couple dim 0 of each parameter in ``tensors`` with the channels of ``lab``'s
    ``dim``. A parameter shared by the heads of a split channel dim (``q_norm`` over the
    head dim) follows the head dims in head-dims mode and stays whole in whole-heads
    mode (``prunekit.graph.head_modes``)."""
    from prunekit.graph.head_modes import DIMS, HEADS

    idx, labels = per_index_pairs(lab, dim)
    split = ctx.heads.owner(lab) if idx.numel() > lab.shape[dim] else None
    for t in tensors:
        wd = WeightDims(ctx, t) if isinstance(t, torch.Tensor) and t.dim() == 1 else None
        if wd is None or not wd.ok or not wd.has(0):
            continue
        atoms = wd.atoms(0)
        if split is None:
            ctx.table.couple(atoms[idx], labels)
        else:
            ctx.heads.couple(split, DIMS, atoms[idx], labels)
            ctx.heads.fix(split, HEADS, atoms)


def _tuple_like(out, lab):
    if isinstance(out, (tuple, list)):
        return (lab,) + (None,) * (len(out) - 1)
    return lab


def batch_norm(ctx, func, args, kwargs, out):
    lab = _mat(ctx, args[0])
    if lab is None:
        return None
    stats = [a for a in args[1:5] if isinstance(a, torch.Tensor)]
    _follow_channel(ctx, lab, 1 if lab.dim() > 1 else 0, stats)
    return _tuple_like(out, lab)


def layer_norm(ctx, func, args, kwargs, out):
    lab = _mat(ctx, args[0])
    if lab is None:
        return None
    shape, weight, bias = args[1], args[2], args[3]
    nd = len(shape)
    dims = list(range(lab.dim() - nd, lab.dim()))
    ctx.table.mark_inexact(lab)
    if nd == 1 and weight is not None:
        _follow_channel(ctx, lab, lab.dim() - 1, [weight, bias])
    elif bool((const_along(lab, dims, True) < 0).any()):
        ctx.table.couple(lab, torch.zeros_like(lab))  # normalised shape cannot shrink
    return _tuple_like(out, lab)


def group_norm(ctx, func, args, kwargs, out):
    lab = _mat(ctx, args[0])
    if lab is None:
        return None
    weight, bias, groups = args[1], args[2], int(args[6])
    ctx.table.mark_inexact(lab)
    c = lab.shape[1]
    if groups > 1:
        per = lab.movedim(1, 0).reshape(groups, c // groups, -1)
        ctx.table.couple(per, per[:1].expand_as(per))
    if weight is None:
        ctx.table.couple(lab, torch.zeros_like(lab))
    else:
        _follow_channel(ctx, lab, 1, [weight, bias])
    return _tuple_like(out, lab)


def prelu(ctx, func, args, kwargs, out):
    lab = _mat(ctx, args[0])
    if lab is None:
        return None
    if args[1].numel() > 1:
        _follow_channel(ctx, lab, 1 if lab.dim() > 1 else 0, [args[1]])
    return lab


def embedding(ctx, func, args, kwargs, out):
    ref = _plain_param(ctx, args[0])
    if ref is None:
        return None
    atoms = ctx.table.dim_atoms(ref.name, 1, ref.base_shape[1], producer=True)
    return _channel_out(atoms, out.shape, out.dim() - 1)


def attention(ctx, func, args, kwargs, out):
    """Fused attention: q and k meet per head along the head dim, v's channels flow out.

    The default scale ``1/sqrt(head dim)`` keeps every head's size (whole heads only);
    a mask added to the scores stays whole, or loses the removed heads' slices when its
    split takes whole heads (see ``prunekit.graph.head_modes``).
    """
    q, k, v = (_mat(ctx, t) for t in args[:3])
    mask = kwargs.get("attn_mask", kwargs.get("attn_bias"))
    if mask is None and len(args) > 3 and isinstance(args[3], torch.Tensor):
        mask = args[3]
    mask_lab = _mat(ctx, mask) if isinstance(mask, torch.Tensor) else None
    keep_default_scale(ctx, q, k, kwargs)
    main = out[0] if isinstance(out, (tuple, list)) else out
    virt = head_contraction(ctx, args[0], args[1], q, k)
    split = ctx.heads.owner(q if q is not None else k)
    link_heads(ctx, split, q, (k, v))
    if mask_lab is not None:
        per_head_bias(ctx, split, mask_lab, virt.narrow(-1, 0, 1))
    if v is None:
        return None
    _values_follow_heads(ctx, split, v, virt)
    col = const_along(v, [v.dim() - 2], keepdim=True)
    if col.dim() >= 3 and col.shape[-3] not in (1, main.shape[-3]):
        # grouped-query attention: each key/value head serves a run of query heads
        col = col.repeat_interleave(main.shape[-3] // col.shape[-3], dim=-3)
    res = col.expand(main.shape)
    return _tuple_like(out, res)


def keep_default_scale(ctx, q, k, kwargs: dict) -> None:
    """The default scale ``1/sqrt(head_dim)`` would change with pruned query/key dims:
    keep them (q / k labels; nothing when an explicit ``scale`` is passed)."""
    if kwargs.get("scale") is not None or ctx.keeps_attention_scale():
        return
    for lab in (q, k):
        if isinstance(lab, torch.Tensor) and lab.dim() >= 1:
            ctx.table.couple(lab, lab.narrow(-1, 0, 1).expand_as(lab))


def _values_follow_heads(ctx, split, v: torch.Tensor, virt: torch.Tensor) -> None:
    """Values split apart from the queries (class attention's separate q / k / v): when
    both splits lose whole heads, head h of v goes with head h of q and k."""
    from prunekit.graph.head_modes import HEADS

    other = ctx.heads.owner(v)
    if split is None or other is None or other == split or v.dim() < 3:
        return
    heads = virt.narrow(-1, 0, 1)  # one atom per head of q / k: (..., H, 1, 1)
    if heads.dim() != v.dim() or heads.shape[-3] != v.shape[-3]:
        return  # grouped-query attention: a value head serves several query heads
    ctx.heads.couple_both(split, other, HEADS, v, heads.expand_as(v))


def head_contraction(ctx, q_t, k_t, q, k) -> torch.Tensor:
    """Couple q and k position by position within each head (batch index); returns the
    virtual atoms ``(..., heads of q, 1, E)`` of the contraction."""
    kb = tuple(k_t.shape[:-2])
    e = q_t.shape[-1]
    n = int(torch.tensor(kb).prod()) if kb else 1
    virt = ctx.table.virtual_atoms(n * e).view(*kb, 1, e)
    if k is not None:
        ctx.table.couple(k, virt.expand_as(k))
    if q_t.dim() >= 3 and k_t.dim() >= 3 and q_t.shape[-3] != k_t.shape[-3] and k_t.shape[-3] > 0:
        virt = virt.repeat_interleave(q_t.shape[-3] // k_t.shape[-3], dim=-3)  # grouped query
    if q is not None:
        ctx.table.couple(q, virt.expand(*q.shape[:-2], 1, e).expand_as(q))
    return virt


def link_heads(ctx, split, q: torch.Tensor | None, others) -> None:
    """Key and value heads (``(..., H, S, E)`` labels) reshaped from other projections
    than the query's must keep the query's heads: their splits take the same mode, and
    whole heads go together (see ``prunekit.graph.head_modes``)."""
    if split is None or q is None or q.dim() < 3:
        return
    qh = q.narrow(-2, 0, 1).narrow(-1, 0, 1)
    for lab in others:
        other = ctx.heads.owner(lab) if lab is not None and lab.dim() >= 3 else None
        if other is None or other == split:
            continue
        oh = lab.narrow(-2, 0, 1).narrow(-1, 0, 1)
        if oh.shape[-3] != qh.shape[-3] and oh.shape[-3] > 0 and \
                qh.shape[-3] % oh.shape[-3] == 0:  # grouped-query attention
            oh = oh.repeat_interleave(qh.shape[-3] // oh.shape[-3], dim=-3)
        if oh.shape[-3] == qh.shape[-3]:
            ctx.heads.link(split, other, qh.expand(torch.broadcast_shapes(
                qh.shape, oh.shape)), oh.expand(torch.broadcast_shapes(qh.shape, oh.shape)))


def per_head_bias(ctx, split, bias: torch.Tensor, heads: torch.Tensor) -> None:
    """A bias added to attention scores ``(..., H, N, S)``: whole in head-dims mode; in
    whole-heads mode its head slices go with the heads (``heads``: one atom per head,
    ``(..., H, 1, 1)``) when it has one slice per head."""
    per_head = split is not None and bias.dim() >= 3 and heads.dim() >= 3 and \
        bias.shape[-3] == heads.shape[-3] and bias.shape[-3] > 1
    if not per_head:
        ctx.table.couple(bias, torch.zeros_like(bias))
        return
    from prunekit.graph.head_modes import DIMS, HEADS

    n = bias.shape[-3]
    per = bias.movedim(-3, 0).reshape(n, -1)  # one row per head (the table gathered)
    key = torch.unique((per.clamp(min=0) << 16) | torch.arange(n)[:, None])
    key = key[key >= 1 << 16]  # labelled elements only
    atoms, head = key >> 16, key & 0xFFFF
    ctx.heads.fix(split, DIMS, atoms)
    ctx.heads.couple(split, HEADS, atoms, heads.reshape(-1, n)[0][head])
