"""Label rules for ops that own weights: convolution, norms, embedding, PReLU, and
fused attention (matrix products: ``prunekit.graph.contraction``). They know which
weight dim is produced (a new channel identity), which is consumed (coupled to the
incoming channels), and which is followed (norms)."""

from __future__ import annotations

import torch

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
    return labels.view(view).expand(shape).contiguous()


def convolution(ctx, func, args, kwargs, out):
    x, w, b = args[0], args[1], args[2]
    transposed, groups = bool(args[6]), int(args[8])
    wref = _plain_param(ctx, w)
    xl = _mat(ctx, x)
    if wref is None:
        if xl is not None and bool((xl >= 0).any()):
            raise ctx.unsupported(func, "convolution whose weight is not a plain parameter")
        return None
    table, name = ctx.table, wref.name
    cdim = 1 if x.dim() == w.dim() else 0
    cout = out.shape[cdim]
    if not transposed:
        o_atoms = table.dim_atoms(name, 0, cout, producer=True)
        ci = w.shape[1]
        if xl is not None:
            idx, lab = per_index_pairs(xl, cdim)
            if groups == 1:
                table.couple(table.dim_atoms(name, 1, ci)[idx], lab)
            elif ci == 1:
                mult = cout // groups
                table.couple(o_atoms.view(groups, mult)[idx], lab[:, None])
            else:
                table.couple(table.dim_atoms(name, 1, ci)[idx % ci], lab)
        if groups > 1 and ci > 1:
            co = cout // groups
            table.couple(o_atoms.view(groups, co), o_atoms[:co][None, :])
        out_labels = o_atoms
    else:
        if groups != 1:
            if xl is not None and bool((xl >= 0).any()):
                raise ctx.unsupported(func, "grouped transposed convolution")
        co = w.shape[1]
        per_group = table.dim_atoms(name, 1, co, producer=True)
        out_labels = per_group.repeat(groups)
        if xl is not None and groups == 1:
            idx, lab = per_index_pairs(xl, cdim)
            table.couple(table.dim_atoms(name, 0, w.shape[0])[idx], lab)
    bref = _plain_param(ctx, b)
    if bref is not None:
        table.couple(table.dim_atoms(bref.name, 0, cout), out_labels)
    return _channel_out(out_labels, out.shape, cdim)


def _follow_channel(ctx, lab, dim, tensors):
    idx, labels = per_index_pairs(lab, dim)
    for t in tensors:
        ref = _plain_param(ctx, t) if isinstance(t, torch.Tensor) else None
        if ref is None:
            continue
        atoms = ctx.table.dim_atoms(ref.name, 0, ref.base_shape[0])
        ctx.table.couple(atoms[idx], labels)


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
    q, k, v = (_mat(ctx, t) for t in args[:3])
    mask = kwargs.get("attn_mask", kwargs.get("attn_bias"))
    if mask is None and len(args) > 3 and isinstance(args[3], torch.Tensor):
        mask = args[3]
    mask_lab = _mat(ctx, mask) if isinstance(mask, torch.Tensor) else None
    if mask_lab is not None:  # added to the scores, whose heads and tokens stay: keep it whole
        ctx.table.couple(mask_lab, torch.zeros_like(mask_lab))
    if kwargs.get("scale") is None and not ctx.keeps_attention_scale():
        # the default scale 1/sqrt(head_dim) would change with pruned query/key dims
        for lab in (q, k):
            if lab is not None:
                ctx.table.couple(lab, torch.zeros_like(lab))
        q = k = None
    main = out[0] if isinstance(out, (tuple, list)) else out
    e = args[0].shape[-1]
    virt = ctx.table.virtual_atoms(e)
    for lab in (q, k):
        if lab is not None:
            idx, labels = per_index_pairs(lab, lab.dim() - 1)
            ctx.table.couple(virt[idx], labels)
    if v is None:
        return None
    col = const_along(v, [v.dim() - 2], keepdim=True)
    if col.dim() >= 3 and col.shape[-3] not in (1, main.shape[-3]):
        # grouped-query attention: each key/value head serves a run of query heads
        col = col.repeat_interleave(main.shape[-3] // col.shape[-3], dim=-3)
    res = col.expand(main.shape).contiguous()
    return _tuple_like(out, res)
