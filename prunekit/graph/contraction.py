"""Label rule of matrix products (``mm``, ``bmm``, ``addmm``, ``baddbmm``).

For ``out[..., i, j] = sum_k a[..., i, k] b[..., k, j]``:

* labels that vary along the contracted dim ``k`` are channels read by the product:
  the two operands' indices of ``k`` are coupled (through one virtual atom per index);
* labels of ``a`` constant along ``k`` index the rows ``i`` of the output, those of ``b``
  its columns ``j``. When both exist (cross-covariance attention ``q^T k``, an SSM
  state ``x @ B^T``, a token MLP over channels) the output carries both: the columns
  as its labels, the rows as second labels (``prunekit.graph.dual``);
* the batch dims must keep matching slices: where one operand has a unit per batch
  slice (talking-heads attention: a linear layer mixing heads), the other must lose
  the same slice; if it has no such unit, the slice is fixed;
* ``bmm`` / ``baddbmm`` contract each batch index (head) on its own: q and k meet
  position by position within a head, and scores of head-split channels get one atom
  per head (``_head_scores``, ``prunekit.graph.head_modes``);
* a weight derived from parameters (weight norm, LoRA ...) contributes its parameter
  axes (``prunekit.graph.derived``); channels met by a contracted dim without per-index
  identity (unfolded kernel positions, an operand without labels) stay.

Parameters keep travelling as ``ParamRef`` views (a linear layer's weight is never
expanded to per-element labels).
"""

from __future__ import annotations

import torch

from prunekit.graph.atoms import NONE, distinct, fill
from prunekit.graph.derived import derived_dims
from prunekit.graph.dual import Dual, fix
from prunekit.graph.labels import ParamRef, const_along, labels_min, per_index_pairs


def _dim_atoms_of(ctx, ref: ParamRef, view_dim: int, producer: bool):
    if ref.dims is None:
        return None
    d = ref.dims[view_dim]
    if d is None:
        return None
    return ctx.table.dim_atoms(ref.name, d, ref.base_shape[d], producer=producer)


def _layers(ctx, t, lab) -> list[torch.Tensor]:
    """The per-element label tensors of an activation: its labels and second labels."""
    out = []
    if lab is not None:
        out.append(lab.materialize(ctx.table) if isinstance(lab, ParamRef) else lab)
    sec = ctx.second.get(t) if isinstance(t, torch.Tensor) else None
    if sec is not None:
        out.append(sec)
    return out


def _contract(ctx, layers, cdim: int, virt: torch.Tensor, batched: bool, is_a: bool,
              varying: list[torch.Tensor]) -> list[torch.Tensor]:
    """Couple the labels varying along the contracted dim to ``virt`` (per batch index
    when ``batched``: ``virt`` is ``(B, K)``), appending them to ``varying``; return the
    label tensors constant along it (rows of ``a`` / columns of ``b``). Labels constant
    over whole batch slices are the slices' identity, not the rows' (``_couple_batch``)."""
    kept = []
    for lab in layers:
        # one label along the contracted dim (NONE there: zero padding) is that label
        hi, lo = lab.amax(dim=cdim), labels_min(lab, cdim)
        if bool(((hi != lo) & (hi >= 0)).any()):
            varying.append(lab)
            if batched:  # per batch index (head): its own contraction
                ctx.table.couple(virt.unsqueeze(1 if is_a else 2).expand_as(lab), lab)
            else:
                idx, labels = per_index_pairs(lab, cdim)
                ctx.table.couple(virt[idx], labels)
        c = torch.where(hi == lo, hi, torch.full_like(hi, NONE))
        if not bool((c >= 0).any()):
            continue
        if c.dim() >= 2 and bool((_slice_units(c.unsqueeze(-1)) >= 0).any()):
            continue
        kept.append(c)
    return kept


def _slice_units(lab: torch.Tensor) -> torch.Tensor:
    """Per batch slice of a ``[..., m, n]`` label tensor: its label if the whole slice
    has that one label and the label changes across slices, else NONE."""
    per = const_along(lab, [lab.dim() - 2, lab.dim() - 1], keepdim=False)
    batch = list(range(per.dim()))
    if not batch:
        return per
    same = const_along(per, batch, keepdim=True)
    return torch.where(same >= 0, torch.full_like(per, NONE), per)


def _couple_batch(ctx, la: list[torch.Tensor], lb: list[torch.Tensor]) -> None:
    """Batch slices that a unit of one operand removes must go in the other too."""
    la, lb = [x for x in la if x.dim() >= 3], [x for x in lb if x.dim() >= 3]
    units_a, units_b = [_slice_units(x) for x in la], [_slice_units(x) for x in lb]
    for mine, theirs, full in ((units_a, units_b, lb), (units_b, units_a, la)):
        for u in mine:
            if not bool((u > 0).any()):
                continue
            partner = torch.full_like(u, NONE)
            for v in theirs:
                if v.shape == u.shape:
                    partner = torch.where(partner >= 0, partner, v)
            ok = (u > 0) & (partner >= 0)
            ctx.table.couple(u[ok], partner[ok])
            lone = (u > 0) & (partner < 0)
            if not _head_slices(ctx, u, lone, full):
                fix(ctx, u[lone])


def _head_slices(ctx, u: torch.Tensor, lone: torch.Tensor, full: list[torch.Tensor]) -> bool:
    """Scores with one atom per head (``_head_scores``) times values of the same split
    (q, k and v chunked from one projection): in whole-heads mode head h of the values
    goes with head h; in head-dims mode the scores stay (the values' dims are shared by
    every head). False when the lone slices are no split's heads."""
    from prunekit.graph.head_modes import DIMS, HEADS

    if not bool(lone.any()):
        return True
    split = ctx.heads.owner(u[lone])
    if split is None:
        return False
    ctx.heads.fix(split, DIMS, u[lone])
    heads = torch.where(lone, u, torch.full_like(u, NONE))
    for x in full:
        if tuple(x.shape[:-2]) == tuple(u.shape):
            ctx.heads.couple(split, HEADS, x, heads[..., None, None].expand_as(x))
    return True


def _combine(ctx, labs: list[torch.Tensor], tables: list[bool]):
    """One label tensor, or a ``Dual`` when two overlap; further ones are fixed.
    ``tables[i]``: ``labs[i]`` are the rows of a buffer (a coordinate table), which
    only fill elements no other label has."""
    pairs = [(x, t) for x, t in zip(labs, tables) if bool((x >= 0).any())]
    if not pairs:
        return None
    labs, tables = [x for x, _ in pairs], [t for _, t in pairs]
    primary, second = labs[0], None
    for x, table in zip(labs[1:], tables[1:]):
        if not bool(((primary >= 0) & (x >= 0)).any()):
            primary = torch.where(primary >= 0, primary, x)  # disjoint: one label each
        elif table:
            continue
        elif second is None:
            second = x
        else:
            fix(ctx, x)
    # the columns of a linear layer broadcast over its rows stay a broadcast view
    return primary if second is None else Dual(primary, second)


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
    if la is None and lb is None and lbias is None and not (a in ctx.second or b in ctx.second):
        return None
    table = ctx.table
    k = a.shape[-1]
    batched = name in ("bmm", "baddbmm") and a.dim() == 3  # contracted per batch (head)
    virt = table.virtual_atoms(a.shape[0] * k).view(a.shape[0], k) if batched else \
        table.virtual_atoms(k)
    rows: list[torch.Tensor] = []
    cols: list[torch.Tensor] = []
    tables: set[int] = set()  # ids of rows / columns that index a buffer
    dense: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    indexed = []  # per operand: whether its contracted dim has an identity per index
    varying: list[torch.Tensor] = []  # labels varying along the contracted dim
    for lab, t, is_a in ((la, a, True), (lb, b, False)):
        cdim = t.dim() - 1 if is_a else t.dim() - 2
        odim = t.dim() - 2 if is_a else t.dim() - 1
        indexed.append(False)
        if isinstance(lab, tuple):  # (contracted atoms, output atoms) of a derived weight
            table.couple(virt, lab[0])
            indexed[-1] = True
            (rows if is_a else cols).append(lab[1])
            continue
        if isinstance(lab, ParamRef) and lab.dims is not None and t not in ctx.second:
            c_atoms = _dim_atoms_of(ctx, lab, cdim, producer=False)
            o_atoms = _dim_atoms_of(ctx, lab, odim, producer=True)
            if c_atoms is not None:
                table.couple(virt, c_atoms)
                indexed[-1] = True
            if o_atoms is not None:
                (rows if is_a else cols).append(o_atoms)
                if lab.name in ctx.buffer_names:
                    tables.add(id(o_atoms))
            continue
        layers = _layers(ctx, t, lab)
        dense[is_a] = layers
        n_varying = len(varying)
        (rows if is_a else cols).extend(
            _contract(ctx, layers, cdim, virt, batched, is_a, varying))
        indexed[-1] = len(varying) > n_varying
    if varying and not all(indexed):
        # channels met by a dim without identity per index (unfolded kernel positions,
        # a tensor without labels): that dim keeps its size, so these channels stay
        table.couple(virt, torch.zeros_like(virt))
    if dense[True] and dense[False]:
        _couple_batch(ctx, dense[True], dense[False])
    shape = out.shape
    if batched and len(varying) == 2 and not rows and not cols:
        scores = _head_scores(ctx, varying[0], virt, shape)  # q @ k^T of head-split channels
        if scores is not None:
            return scores
    labs = [c.unsqueeze(-2).expand(shape) for c in cols]
    labs += [r.unsqueeze(-1).expand(shape) for r in rows]
    result = _combine(ctx, labs, [id(x) in tables for x in cols + rows])
    if lbias is not None:
        blab = lbias.materialize(table) if isinstance(lbias, ParamRef) else lbias
        bl = blab.expand(shape)
        main = result.primary if isinstance(result, Dual) else result
        if main is None:
            main = torch.full(shape, NONE, dtype=torch.int64)
        main = fill(main, bl)
        table.couple(main, bl)
        result = Dual(main, result.second) if isinstance(result, Dual) else main
        if not bool((distinct(main) >= 0).any()):
            return None
    return result


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
