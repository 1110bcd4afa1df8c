"""Label rules for sliding-window ops and a precise error for fused recurrent kernels.

* ``im2col`` (``nn.Unfold``): ``(N, C, H, W) -> (N, C * kh * kw, L)``; row ``c * kh * kw + k``
  reads channel ``c``, so each channel's label is repeated over its ``kh * kw`` rows (the
  block stays whole when ``C`` shrinks, and a later ``reshape(B, C, kh * kw, L)`` splits
  it back).
* ``col2im`` (``nn.Fold``): the inverse; every row of channel ``c``'s block (and every
  window position) is summed into output channel ``c``, so they are coupled and carry
  its label.
* Fused recurrent kernels (``mkldnn_rnn_layer``, ``_cudnn_rnn`` ...) hide the gates: the
  tracer runs ``nn.LSTM`` / ``nn.GRU`` with oneDNN off (``prunekit.graph.guard``), where
  they decompose into matmuls, chunks and pointwise gates that the ordinary rules follow
  (hidden units are pruned consistently across the gates). Any such kernel still met
  raises an error that says so.
* In-place views (``transpose_``, ``t_``, ``squeeze_``, ``unsqueeze_``, as ``nn.GRU``'s
  batch-first output uses) rearrange the labels like their out-of-place forms.

Every rule has the signature of :mod:`prunekit.graph.rules`.
"""

from __future__ import annotations

import torch

from prunekit.graph.labels import const_along
from prunekit.graph.labels import label_of as _label

RNN_KERNELS = {"mkldnn_rnn_layer", "_cudnn_rnn", "miopen_rnn", "_thnn_fused_lstm_cell",
               "_thnn_fused_gru_cell", "mkldnn_rnn"}


def _per_channel(ctx, lab: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) labels -> (N, C): each channel's label; labels varying over a
    channel's positions are coupled (they all feed the same output channel)."""
    rest = list(range(2, lab.dim()))
    if not rest:
        return lab
    per = const_along(lab, rest, keepdim=False)
    hi = lab.amax(dim=rest)
    mixed = (per < 0) & (hi >= 0)
    if bool(mixed.any()):
        shape = tuple(hi.shape) + (1,) * len(rest)
        ctx.table.couple(lab, hi.reshape(shape).expand_as(lab))
        per = hi
    return per


def _batched(ctx, t, nd: int):
    """(labels with a batch dim, whether ``t`` had one), or (None, False) unlabelled."""
    lab = _label(ctx, t)
    if lab is None:
        return None, False
    return (lab, True) if lab.dim() == nd else (lab.unsqueeze(0), False)


def im2col(ctx, func, args, kwargs, out):
    """``nn.Unfold``: channel labels repeated over each channel's kernel rows."""
    x, batched = _batched(ctx, args[0], 4)
    if x is None:
        return None
    per = _per_channel(ctx, x)  # (N, C)
    kk = out.shape[-2] // x.shape[1]
    res = per.repeat_interleave(kk, dim=1).unsqueeze(-1)
    res = res.expand(x.shape[0], res.shape[1], out.shape[-1]).contiguous()
    return res if batched else res[0]


def col2im(ctx, func, args, kwargs, out):
    """``nn.Fold``: a channel's kernel rows and windows sum into that output channel."""
    x, batched = _batched(ctx, args[0], 3)
    if x is None:
        return None
    main = out if batched else out.unsqueeze(0)
    c = main.shape[1]
    per = _per_channel(ctx, x.reshape(x.shape[0], c, -1))  # (N, C)
    res = per.reshape(per.shape + (1, 1)).expand(main.shape).contiguous()
    return res if batched else res[0]


def rnn_kernel(ctx, func, args, kwargs, out):
    """A fused recurrent kernel: its gates cannot be followed, say what works."""
    raise ctx.unsupported(
        func, "a fused recurrent kernel hides the gates; prunekit traces nn.LSTM / nn.GRU "
        "with oneDNN off, where they decompose into matmuls it follows. A custom RNN "
        "calling this kernel directly cannot be pruned through")


INPLACE_VIEWS = {"transpose_", "t_", "squeeze_", "unsqueeze_", "swapaxes_", "swapdims_",
                 "as_strided_"}


def inplace_view(ctx, func, args, kwargs, out):
    """``x.transpose_(0, 1)``: the labels move like ``x.transpose(0, 1)`` (a new label
    tensor: labels may be shared with other tensors)."""
    lab = _label(ctx, args[0])
    if lab is None:
        return None
    name = func.__name__.split(".")[0]
    if name == "as_strided_":
        if tuple(out.shape) == tuple(lab.shape):
            return lab
        raise ctx.unsupported(func, "as_strided_ that changes the shape of a labelled tensor")
    res = getattr(torch.ops.aten, name[:-1])(lab, *args[1:], **kwargs)
    return res.contiguous()


UNFOLD_RULES = {"im2col": im2col, "col2im": col2im, **{k: inplace_view for k in INPLACE_VIEWS},
                **{k: rnn_kernel for k in RNN_KERNELS}}
