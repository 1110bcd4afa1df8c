"""Label rules for ops that own weights: convolution, matmul, norms, embedding, PReLU,
and fused attention. They know which weight dim is produced (a new channel identity),
which is consumed (coupled to the incoming channels), and which is followed (norms)."""

from __future__ import annotations

import torch

from prunekit.graph.atoms import NONE
from prunekit.graph.derived import WeightDims, derived_dims
from prunekit.graph.labels import ParamRef, const_along, labels_min, per_index_pairs


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


def _dim_atoms_of(ctx, ref: ParamRef, view_dim: int, producer: bool):
    if ref.dims is None:
        return None
    d = ref.dims[view_dim]
    if d is None:
        return None
    return ctx.table.dim_atoms(ref.name, d, ref.base_shape[d], producer=producer)


def matmul(ctx, func, args, kwargs, out):
    name = func.__name__.split(".")[0]
    if name in ("addmm", "baddbmm", "addbmm"):
        bias, a, b = args[0], args[1], args[2]
    else:
        bias, a, b = None, args[0], args[1]
    # a weight derived from parameters (weight norm, LoRA ...): its axes, not its label
    da, db = (_derived_pair(ctx, t, t.dim() - 1 if t is a else t.dim() - 2) for t in (a, b))
    la = da if da is not None else ctx.lab(a)
    lb = db if db is not None else ctx.lab(b)
    lbias = ctx.lab(bias) if bias is not None else None
    if la is None and lb is None and lbias is None:
        return None
    table = ctx.table
    k = a.shape[-1]
    batched = name in ("bmm", "baddbmm") and a.dim() == 3  # contracted per batch (head)
    virt = table.virtual_atoms(a.shape[0] * k).view(a.shape[0], k) if batched else \
        table.virtual_atoms(k)
    row = col = None
    indexed = []  # per operand: whether its contracted dim has an identity per index
    varies = False
    varying = []  # labels of the operands whose contracted dim is a channel dim
    for lab, t, cdim, is_a in ((la, a, a.dim() - 1, True), (lb, b, b.dim() - 2, False)):
        indexed.append(False)
        if lab is None:
            continue
        odim = t.dim() - 2 if is_a else t.dim() - 1
        if isinstance(lab, tuple):  # (contracted atoms, output atoms) of a derived weight
            table.couple(virt, lab[0])
            indexed[-1] = True
            row, col = (lab[1], col) if is_a else (row, lab[1])
            continue
        if isinstance(lab, ParamRef) and lab.dims is not None:
            c_atoms = _dim_atoms_of(ctx, lab, cdim, producer=False)
            o_atoms = _dim_atoms_of(ctx, lab, odim, producer=True)
            if c_atoms is not None:
                table.couple(virt, c_atoms)
                indexed[-1] = True
            if o_atoms is not None:
                if is_a:
                    row = o_atoms
                else:
                    col = o_atoms
            continue
        if isinstance(lab, ParamRef):
            lab = lab.materialize(table)
        # one label along the contracted dim (NONE there: zero padding) is that label
        hi, lo = lab.amax(dim=cdim), labels_min(lab, cdim)
        c = torch.where(hi == lo, hi, torch.full_like(hi, NONE))
        if bool(((hi != lo) & (hi >= 0)).any()):
            # labels vary along the contracted dim: it is a channel dim, couple per index
            varying.append(lab)
            if batched:  # per batch index (head): its own contraction
                table.couple(virt.unsqueeze(1 if is_a else 2).expand_as(lab), lab)
            else:
                idx, labels = per_index_pairs(lab, cdim)
                table.couple(virt[idx], labels)
            indexed[-1] = varies = True
        if is_a:
            row = c
        else:
            col = c
    if varies and not all(indexed):
        # channels met by a dim without identity per index (unfolded kernel positions,
        # a tensor without labels): that dim keeps its size, so these channels stay
        table.couple(virt, torch.zeros_like(virt))
    shape = out.shape
    if row is not None and not bool((row >= 0).any()):
        row = None
    if batched and len(varying) == 2 and row is None and (col is None or not bool((col >= 0).any())):
        return _head_scores(ctx, varying[0], virt, shape)
    if col is not None and row is None:
        result = col.unsqueeze(-2).expand(shape)
    else:
        result = torch.full(shape, NONE, dtype=torch.int64)
        if row is not None:
            result = torch.where(result >= 0, result, row.unsqueeze(-1).expand(shape))
        if col is not None:
            c = col.unsqueeze(-2).expand(shape)
            result = torch.where(c >= 0, c, result)
    if lbias is not None:
        blab = lbias.materialize(table) if isinstance(lbias, ParamRef) else lbias
        bl = blab.expand(shape)
        table.couple(torch.where(result >= 0, result, bl), bl)
        result = torch.where(result >= 0, result, bl)
    if not bool((result >= 0).any()):
        return None
    return result.contiguous()


def _derived_pair(ctx, t, cdim: int):
    """(contracted dim atoms, output dim atoms) of a 2-D weight derived from parameters
    whose two dims each come from one parameter dim, else None."""
    wd = derived_dims(ctx, t)
    if wd is None or t.dim() != 2 or not (wd.has(0) and wd.has(1)):
        return None
    return wd.atoms(cdim), wd.atoms(1 - cdim, producer=True)


def _head_scores(ctx, q: torch.Tensor, virt: torch.Tensor, shape) -> torch.Tensor | None:
    """Labels of attention scores ``q @ k^T`` ``(B*H, N, S)`` computed from head-split
    channels: one virtual atom per batch index (head). In whole-heads mode it is the head
    (a bias or scale added per head goes with it), in head-dims mode it is fixed (such a
    bias stays whole); see ``prunekit.graph.head_modes``."""
    from prunekit.graph.head_modes import DIMS, HEADS

    split = ctx.heads.owner(q)
    if split is None:
        return None
    scores = ctx.table.virtual_atoms(shape[0])
    ctx.heads.claim(scores, split)
    ctx.heads.fix(split, DIMS, scores)
    ctx.heads.couple(split, HEADS, scores, virt[:, 0])
    return scores.view(-1, 1, 1).expand(shape).contiguous()


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
    if kwargs.get("scale") is None and not ctx.keeps_attention_scale():
        # the default scale 1/sqrt(head_dim) would change with pruned query/key dims
        for lab in (q, k):
            if lab is not None:
                ctx.table.couple(lab, lab.narrow(-1, 0, 1).expand_as(lab))
    main = out[0] if isinstance(out, (tuple, list)) else out
    virt = head_contraction(ctx, args[0], args[1], q, k)
    split = ctx.heads.owner(q if q is not None else k)
    if mask_lab is not None:
        per_head_bias(ctx, split, mask_lab, virt.narrow(-1, 0, 1))
    if v is None:
        return None
    col = const_along(v, [v.dim() - 2], keepdim=True)
    if col.dim() >= 3 and col.shape[-3] not in (1, main.shape[-3]):
        # grouped-query attention: each key/value head serves a run of query heads
        col = col.repeat_interleave(main.shape[-3] // col.shape[-3], dim=-3)
    res = col.expand(main.shape).contiguous()
    return _tuple_like(out, res)


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
