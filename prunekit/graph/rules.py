"""Label rules for aten ops: how channel identity flows through each op, and what it couples.

Every rule has the signature ``rule(ctx, func, args, kwargs, out) -> labels`` where the
returned labels mirror ``out`` (a label tensor / ``ParamRef`` / ``None`` per tensor).
Families:

* structural ops (views, permutes, cat, split, index, pad, roll ...) run the same op on
  the label tensors, so any rearrangement - channel shuffle, window partition, heads
  written with reshapes - is followed exactly;
* pointwise ops couple their operands element by element (with broadcasting);
* reductions and pools keep a label only where it is constant over the reduced dims;
* convolution / matmul / norms / embedding / attention know their weights' dims.
"""

from __future__ import annotations

import torch

from prunekit.graph.atoms import NONE, cat_labels, compress_dims, compress_slices
from prunekit.graph.derived import view_axes
from prunekit.graph.guard import VIEWISH
from prunekit.graph.index_rules import (
    INDEX_REDUCTIONS,
    ROI,
    SELECTIONS,
    SINKS,
    fix_addressed,
    fix_varying,
    roi,
    selection,
    sink,
)
from prunekit.graph.labels import ParamRef, const_along, view_dims
from prunekit.graph.labels import label_of as _label
from prunekit.graph.pointwise_rules import pointwise
from prunekit.graph.unfold_rules import UNFOLD_RULES

# ops whose first argument is the data and that only rearrange/select elements
SINGLE_STRUCTURAL = {
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "slice",
    "select", "squeeze", "unsqueeze", "clone", "contiguous", "alias", "detach", "lift_fresh",
    "flip", "roll", "narrow", "unfold", "repeat", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "movedim", "unflatten", "flatten", "split", "split_with_sizes",
    "chunk", "unbind", "index", "index_select", "gather", "_to_copy", "expand_as",
    "view_as", "diagonal", "constant_pad_nd", "_unsafe_index", "tensor_split", "rot90",
    "_reshape_alias", "as_strided", "as_strided_", "repeat_interleave", "tile", "swapaxes",
    "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk",
}
PARAM_VIEW_OPS = {
    "t", "transpose", "permute", "unsqueeze", "squeeze", "expand", "clone", "contiguous",
    "alias", "detach", "lift_fresh", "_to_copy", "view", "_unsafe_view", "reshape",
}
MULTI_STRUCTURAL = {"cat", "stack", "index_put", "index_put_", "slice_scatter",
                    "select_scatter", "copy_", "copy", "masked_scatter", "hstack", "vstack"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "var", "std", "prod", "logsumexp", "norm",
              "linalg_vector_norm", "max", "min", "argmax", "argmin", "var_mean", "std_mean",
              "any", "all", "nansum", "nanmean", "count_nonzero"}
SPATIAL = {"avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d",
           "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
           "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d",
           "adaptive_max_pool2d", "adaptive_max_pool1d", "adaptive_max_pool3d",
           "upsample_nearest2d", "upsample_bilinear2d", "upsample_bicubic2d",
           "upsample_nearest1d", "upsample_linear1d", "upsample_nearest3d",
           "upsample_trilinear3d", "_upsample_bilinear2d_aa", "_upsample_nearest_exact2d",
           "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
           "replication_pad2d", "replication_pad3d", "avg_pool2d_backward",
           "fractional_max_pool2d", "lp_pool2d", "grid_sampler_2d"}
UNARY = {"hardswish", "hardsigmoid", "silu", "gelu", "relu", "relu6", "elu", "selu", "celu",
         "leaky_relu", "mish", "softplus", "hardtanh", "sigmoid", "tanh", "glu_never",
         "threshold", "rrelu", "log_sigmoid_forward", "logit", "erf", "exp", "log", "sqrt",
         "rsqrt", "abs", "neg", "reciprocal", "sign", "square", "pow", "clamp_min", "clamp_max",
         "hardshrink", "softshrink", "tanhshrink", "sin", "cos", "floor", "ceil", "round"}
SAME_SHAPE = {"native_dropout", "_softmax", "_log_softmax", "softmax", "log_softmax",
              "dropout", "feature_dropout", "alpha_dropout", "cumsum", "cumprod",
              "_masked_softmax", "_safe_softmax", "logcumsumexp"}
IGNORED = {"_local_scalar_dense", "is_nonzero", "equal", "sym_size", "sym_stride",
           "sym_numel", "sym_storage_offset", "_assert_async", "record_stream", "item",
           "set_", "resize_", "_has_compatible_shallow_copy_type", "is_same_size",
           "_assert_tensor_metadata", "allclose", "isclose"}
FRESH = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
         "new_zeros", "new_ones", "new_empty", "new_full", "bernoulli", "bernoulli_",
         "zero_", "fill_", "normal_", "uniform_", "randint_like", "empty_strided", "new_empty_strided"}


def _split_coupling(ctx, in_shape, out_shape, out_lab):
    """A view that splits one labelled dim into several keeps working after pruning only
    if the same positions are removed in every slice of the leading split dims: couple
    them (channel shuffle groups, heads x head_dim)."""
    blocks = _view_blocks(tuple(in_shape), tuple(out_shape))
    for (_i0, _i1), (o0, o1) in blocks:
        out_big = [d for d in range(o0, o1) if out_shape[d] > 1]
        if len(out_big) < 2:
            continue
        # tokens / pixels / batch rows outside the split usually repeat: drop the repeats
        lab = compress_dims(out_lab, [d for d in range(len(out_shape)) if not o0 <= d < o1])
        while len(out_big) >= 2 and bool((lab == lab.narrow(out_big[-1], 0, 1)).all()):
            out_big.pop()  # a trailing dim the labels do not vary along (unfolded kernel rows)
        if len(out_big) < 2:
            continue
        if ctx.current_view is not None and bool((lab > 0).any()):  # checked after the cut
            ctx.splits[ctx.current_view] = ctx.splits.get(ctx.current_view, ()) + tuple(
                (d, out_shape[d]) for d in out_big[:-1])
        ref = lab
        for d in out_big[:-1]:
            ref = ref.narrow(d, 0, 1)
        if _channel_split(ctx, lab, o0, o1):
            ctx.heads.add(ctx.current_view, lab, out_big)  # head dims or whole heads
        else:
            ctx.table.couple(lab, ref.expand_as(lab))
        ctx.alias(lab, ref.expand_as(lab))


def _channel_split(ctx, out_lab, o0: int, o1: int) -> bool:
    """Whether a view splits a channel dim (out dims ``o0:o1``) into heads: labelled, not
    split before, and its labels repeat along every other dim (tokens, pixels)."""
    if ctx.heads.owner(out_lab) is not None or not bool((out_lab > 0).any()):
        return False
    small = compress_slices(out_lab)[0]
    return all(small.shape[d] <= 2 for d in range(small.dim()) if not o0 <= d < o1)


def _view_blocks(a, b):
    """Pair up dim ranges of two shapes with equal products."""
    blocks, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        i0, j0 = i, j
        pa = a[i] if i < len(a) else 1
        pb = b[j] if j < len(b) else 1
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb and i < len(a):
                pa *= a[i]
                i += 1
            elif j < len(b):
                pb *= b[j]
                j += 1
            else:
                break
        blocks.append(((i0, min(i, len(a))), (j0, min(j, len(b)))))
    return blocks


def structural(ctx, func, args, kwargs, out):
    name = func.__name__.split(".")[0]
    src = args[0]
    lab = ctx.lab(src)
    if lab is None:
        return None
    if isinstance(lab, ParamRef):
        if name in PARAM_VIEW_OPS and isinstance(out, torch.Tensor):
            return _param_view(ctx, func, name, lab, args, kwargs, out)
        lab = lab.materialize(ctx.table)
    if name in ("_to_copy", "clone", "contiguous", "alias", "detach", "lift_fresh"):
        return lab  # labels are never written in place: a copy would only cost memory
    if name in VIEWISH:
        res = lab.reshape(out.shape)
        _split_coupling(ctx, tuple(src.shape), tuple(out.shape), res)
        return res
    if name == "constant_pad_nd":
        return torch.constant_pad_nd(lab, args[1], NONE)
    if name == "select":
        fix_addressed(ctx, lab, args[1])
    if name in ("as_strided", "as_strided_"):
        if tuple(out.shape) == tuple(lab.shape):
            return lab
        raise ctx.unsupported(func, "as_strided that changes the shape of a labelled tensor")
    new_args = (lab,) + tuple(args[1:])
    kw = {k: v for k, v in kwargs.items() if k not in ("dtype", "layout", "device",
                                                        "pin_memory", "memory_format")}
    res = func(*new_args, **kw)
    if name.removeprefix("unsafe_") in ("split", "chunk", "tensor_split", "split_with_sizes",
                                        "unbind"):
        _chunk_coupling(ctx, name, res, args)
    return res


def _chunk_coupling(ctx, name, parts, args):
    name = name.removeprefix("unsafe_")
    if name == "unbind" or len(parts) < 2:
        return
    dim = args[2] if len(args) > 2 else 0
    sizes = {p.shape[dim] for p in parts}
    varying = any(int(p.amax()) != int(p.amin()) for p in parts)
    if not varying:
        return
    if len(sizes) == 1:  # equal chunks are computed from the runtime size: keep them equal
        for p in parts[1:]:
            ctx.table.couple(parts[0], p)
    elif ctx.sizes_stored:  # sizes held by an attribute, updated after the cut (graph.sizes)
        return
    else:  # hard-coded unequal sizes cannot follow a pruned tensor
        for p in parts:
            ctx.table.couple(p, torch.zeros_like(p))


def _param_view(ctx, func, name, ref: ParamRef, args, kwargs, out):
    shape = tuple(out.shape)
    step_args, step_kw = tuple(args[1:]), {
        k: v for k, v in kwargs.items() if k not in ("dtype", "layout", "device", "pin_memory",
                                                     "memory_format")}
    if name in VIEWISH:
        def step(t, s=shape):
            return t.reshape(s)
    elif name == "_to_copy":
        def step(t):
            return t
    else:
        def step(t, f=func, a=step_args, k=step_kw):
            return f(t, *a, **k)
    dims = ref.dims
    if dims is not None:
        nd = len(ref.shape)
        if name == "t":
            dims = tuple(reversed(dims))
        elif name == "transpose":
            a, b = args[1] % max(nd, 1), args[2] % max(nd, 1)
            d = list(dims)
            d[a], d[b] = d[b], d[a]
            dims = tuple(d)
        elif name == "permute":
            dims = tuple(dims[p % nd] for p in args[1])
        elif name in ("unsqueeze", "squeeze", "expand") or name in VIEWISH:
            dims = view_dims(ref.shape, shape, dims) if name != "expand" else tuple(
                d if (d is not None and ref.shape[i - (len(shape) - nd)] == s) else None
                for i, (d, s) in enumerate(
                    zip((None,) * (len(shape) - nd) + dims, shape))
            )
    axes = view_axes(name, args, ref.axes, shape) if ref.axes is not None else None
    return ref.derive(shape, dims, step, axes)


def same_shape(ctx, func, args, kwargs, out):
    lab = _label(ctx, args[0])
    if lab is None:
        return None
    name = func.__name__.split(".")[0]
    if "softmax" in name:
        pos = 2 if name == "_masked_softmax" else 1  # (self, mask, dim, mask_type)
        dim = kwargs.get("dim", args[pos] if len(args) > pos else None)
        dims = [dim % max(lab.dim(), 1)] if isinstance(dim, int) else list(range(lab.dim()))
        if bool((const_along(lab, dims, True) < 0).any()):
            ctx.table.mark_inexact(lab)
    if isinstance(out, (tuple, list)):
        return tuple(lab if isinstance(o, torch.Tensor) and o.shape == lab.shape else None
                     for o in out)
    return lab


def reduction(ctx, func, args, kwargs, out):
    lab = _label(ctx, args[0])
    if lab is None:
        return None
    name = func.__name__.split(".")[0]
    first = 2 if name in ("linalg_vector_norm", "norm") else 1  # (self, ord, dim, keepdim)
    dims = kwargs.get("dim", args[first] if len(args) > first else None)
    keepdim = kwargs.get("keepdim", args[first + 1] if len(args) > first + 1 and isinstance(
        args[first + 1], bool) else False)
    if isinstance(dims, int):
        dims = [dims]
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims = list(range(lab.dim()))
    if not all(isinstance(d, int) for d in dims):
        dims = list(range(lab.dim()))
    dims = [d % max(lab.dim(), 1) for d in dims]
    lab = ctx.same_unit(lab)  # slices coupled position by position (radix, groups) sum exactly
    lab = _stacked_slices(ctx, lab, dims)
    if name in INDEX_REDUCTIONS and isinstance(out, (tuple, list)) or name in ("argmax", "argmin"):
        fix_varying(ctx, lab, dims)  # the positions it returns are channel indices
    res = const_along(lab, dims, keepdim)
    if bool(((res < 0) & True).any()) and bool((lab >= 0).any()):
        ctx.table.mark_inexact(lab)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    fitted = []
    for o in outs:
        if isinstance(o, torch.Tensor) and o.shape == res.shape:
            fitted.append(res)
        elif isinstance(o, torch.Tensor) and o.numel() == res.numel():
            fitted.append(res.reshape(o.shape))
        else:
            fitted.append(None)
    return tuple(fitted) if isinstance(out, (tuple, list)) else fitted[0]


def _stacked_slices(ctx, lab: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """Reducing over stacked branches (``torch.stack(paths).sum(0)``: selective-kernel
    attention, the mean of two classifier heads) adds channel ``c`` of every branch:
    where the labels vary along both the reduced and a kept dim, the slices along the
    reduced dims must lose the same channels. Couple them to the first slice and return
    the labels with the first slice's atoms."""
    kept = [d for d in range(lab.dim()) if d not in dims and lab.shape[d] > 1]
    if not kept or not dims or lab.numel() == 0:
        return lab
    mixed = (const_along(lab, dims, True) < 0) & (lab.amax(dim=dims, keepdim=True) >= 0)
    if not bool(mixed.any()) or not bool((const_along(lab, kept, True) < 0).any()):
        return lab
    ref = lab
    for d in dims:
        ref = ref.narrow(d, 0, 1)
    ref = ref.expand_as(lab)
    both = (lab >= 0) & (ref >= 0)
    ctx.table.couple(lab[both], ref[both])
    return torch.where(both, ref, lab)


def spatial(ctx, func, args, kwargs, out):
    lab = _label(ctx, args[0])
    if lab is None:
        return None
    main = out[0] if isinstance(out, (tuple, list)) else out
    lead = 2 if lab.dim() >= 3 and main.dim() == lab.dim() else 1
    rest = list(range(lead, lab.dim()))
    per = const_along(lab, rest, keepdim=True)
    mixed = (per < 0) & (lab.amax(dim=rest, keepdim=True) >= 0) if rest else None
    if mixed is not None and bool(mixed.any()):
        hi = lab.amax(dim=rest, keepdim=True)
        ctx.table.couple(lab, hi.expand_as(lab))
        per = hi
    res = per.expand(tuple(main.shape[:lead]) + (1,) * (main.dim() - lead)).expand(
        main.shape).contiguous()
    if isinstance(out, (tuple, list)):
        return tuple(res if isinstance(o, torch.Tensor) and o.shape == main.shape else None
                     for o in out)
    return res


def multi_structural(ctx, func, args, kwargs, out):
    name = func.__name__.split(".")[0]
    def mat(t, like):
        lab = _label(ctx, t)
        return torch.full(like.shape, NONE, dtype=torch.int64) if lab is None else lab
    if name in ("cat", "stack", "hstack", "vstack"):
        labs = [mat(t, t) for t in args[0]]
        if all(int(x.max()) < 0 for x in labs if x.numel()):
            return None
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        ref = _couple_joined(ctx, name, labs, dim) if name in ("cat", "stack") else None
        if ref is not None and isinstance(out, torch.Tensor):
            return ref.expand(out.shape)  # the inputs are one unit per position
        if name == "cat":
            return cat_labels(labs, dim)
        return func(labs, *args[1:], **kwargs)
    if name in ("copy_", "copy"):
        src = mat(args[1], args[1])
        return src.expand(args[0].shape).contiguous()
    if name in ("index_put", "index_put_"):
        return torch.ops.aten.index_put(mat(args[0], args[0]), args[1], mat(args[2], args[2]),
                                        *args[3:])
    if name == "masked_scatter":
        return torch.ops.aten.masked_scatter(mat(args[0], args[0]), args[1], mat(args[2], args[2]))
    if name in ("slice_scatter", "select_scatter"):
        op = getattr(torch.ops.aten, name)
        return op(mat(args[0], args[0]), mat(args[1], args[1]), *args[2:])
    raise ctx.unsupported(func, "no label rule")


def _couple_joined(ctx, name, labs, dim) -> torch.Tensor | None:
    """``stack``, or ``cat`` along a dim no input's labels vary by (a batch or token dim),
    needs its inputs to lose the same positions of every other dim (feature maps stacked
    and summed, YOLOv9's ``CBFuse``): couple them element by element, and alias them so
    that a reduction over the new dim sums one unit. Returns the first input's slice
    when every input of such a ``cat`` was coupled to it (a class token joined to the
    patch tokens): the result's labels are that slice repeated."""
    labelled = [lab for lab in labs if lab.numel() and int(lab.max()) >= 0]
    if len(labelled) < 2:
        return None
    if name == "cat":
        d = dim % labelled[0].dim()
        if any(bool((const_along(lab, [d], True) < 0).any()) for lab in labelled):
            return None  # channels concatenated: each input keeps its own
        labelled = [lab.narrow(d, 0, 1) for lab in labelled]
    ref = labelled[0]
    for lab in labelled[1:]:
        if lab.shape == ref.shape:
            ctx.table.couple(lab, ref)
            ctx.alias(lab, ref)
    whole = len(labelled) == len([lab for lab in labs if lab.numel()]) and all(
        lab.shape == ref.shape for lab in labelled)
    return ref if name == "cat" and whole else None


def family_rule(name: str, func):
    """The label rule of an op without weights, by its family (None: no rule)."""
    if name in UNFOLD_RULES:
        return UNFOLD_RULES[name]
    if name in MULTI_STRUCTURAL:
        return multi_structural
    if name in SINGLE_STRUCTURAL:
        return structural
    if torch.Tag.pointwise in func.tags or name.rstrip("_") in UNARY or name in ("where", "clamp", "lerp"):
        return pointwise
    families = ((SAME_SHAPE, same_shape), (REDUCTIONS, reduction), (SPATIAL, spatial),
                (SELECTIONS, selection), (SINKS, sink), (ROI, roi))
    return next((rule for names, rule in families if name in names), None)
