"""Labels carried by traced tensors: per-element atom tensors, or references to parameters.

A parameter (or buffer) seen by the tracer is not expanded to per-element atoms up
front; it travels as a ``ParamRef`` through cheap view ops (``t``, ``permute``,
``unsqueeze``, ``expand``, ``clone`` ...) that keep track of which parameter dim each
view dim is. Ops that understand weights (convolution, matmul, norms, embedding) read
those dims; any other op materialises per-element atoms by replaying the views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from prunekit.graph.atoms import NONE, AtomTable, distinct


@dataclass(frozen=True)
class ParamRef:
    """A view of parameter ``name``: ``dims[i]`` is the parameter dim of view dim ``i``
    (``None`` for an inserted size-1 dim); ``dims is None`` when the view mixes dims.
    ``axes`` (see ``prunekit.graph.derived``) also follows views that merge dims."""

    name: str
    base_shape: tuple[int, ...]
    shape: tuple[int, ...]
    dims: tuple[int | None, ...] | None
    replay: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = field(default=())
    axes: tuple | None = None

    def derive(
        self,
        shape: tuple[int, ...],
        dims: tuple[int | None, ...] | None,
        step: Callable[[torch.Tensor], torch.Tensor],
        axes: tuple | None = None,
    ) -> ParamRef:
        return ParamRef(self.name, self.base_shape, tuple(shape), dims, self.replay + (step,),
                        axes)

    def real_dims(self) -> list[tuple[int, int]]:
        """(view dim, parameter dim) pairs for the dims of size > 1."""
        if self.dims is None:
            return []
        return [
            (i, d) for i, d in enumerate(self.dims) if d is not None and self.base_shape[d] > 1
        ]

    def materialize(self, table: AtomTable) -> torch.Tensor:
        """Per-element atom labels of this view.

        A tensor with at most one dim of size > 1 uses the per-dim atoms of that dim,
        so a bias or a per-channel scale reads like any other slice.
        """
        big = [d for d, s in enumerate(self.base_shape) if s > 1]
        if len(big) <= 1:
            if not big:
                labels = torch.full(self.base_shape, NONE, dtype=torch.int64)
            else:
                d = big[0]
                atoms = table.dim_atoms(self.name, d, self.base_shape[d], producer=True)
                view = [1] * len(self.base_shape)
                view[d] = -1
                labels = atoms.view(view).expand(self.base_shape).contiguous()
        else:
            labels = table.elem_atoms(self.name, self.base_shape)
        for step in self.replay:
            labels = step(labels)
        return labels.contiguous() if labels.shape == torch.Size(self.shape) else labels.reshape(
            self.shape
        )


def view_dims(
    old_shape: tuple[int, ...], new_shape: tuple[int, ...], old_dims: tuple[int | None, ...]
) -> tuple[int | None, ...] | None:
    """Dims mapping after a view that only inserts/removes size-1 dims, else None."""
    old_big = [(s, d) for s, d in zip(old_shape, old_dims) if s != 1]
    new_big = [s for s in new_shape if s != 1]
    if [s for s, _ in old_big] != new_big:
        return None
    it = iter(d for _, d in old_big)
    return tuple(next(it) if s != 1 else None for s in new_shape)


def const_along(labels: torch.Tensor, dims: list[int], keepdim: bool) -> torch.Tensor:
    """Label of each slice if it is the same over ``dims``, else NONE."""
    if not dims:
        return labels
    dims = [d % labels.dim() for d in dims]
    small = distinct(labels)  # a broadcast (stride-0) dim reduces on one slice
    hi = small.amax(dim=dims, keepdim=True)
    lo = small.amin(dim=dims, keepdim=True)
    res = torch.where(hi == lo, hi, torch.full_like(hi, NONE))
    res = res.expand([1 if d in dims else n for d, n in enumerate(labels.shape)])
    return res if keepdim else res.squeeze(tuple(dims))


def labels_min(labels: torch.Tensor, dims: list[int] | int) -> torch.Tensor:
    """Smallest label >= 0 over ``dims`` (NONE where there is none): positions without
    identity (zero padding) do not make a slice's label vary."""
    dims = [d % labels.dim() for d in ([dims] if isinstance(dims, int) else dims)]
    small = distinct(labels)  # a broadcast (stride-0) dim reduces on one slice
    lo = small.amin(dim=dims, keepdim=True)
    if bool((lo < 0).any()):  # NONE somewhere: the smallest label >= 0
        big = torch.iinfo(labels.dtype).max
        lo = torch.where(small >= 0, small, big).amin(dim=dims, keepdim=True)
        lo = torch.where(lo == big, torch.full_like(lo, NONE), lo)
    lo = lo.expand([1 if d in dims else n for d, n in enumerate(labels.shape)])
    return lo.squeeze(tuple(dims))


def per_index_pairs(labels: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique (index along ``dim``, label) pairs with label >= 0."""
    from prunekit.graph.atoms import compress_slices

    dim = dim % labels.dim()
    k = labels.shape[dim]
    moved = labels.movedim(dim, -1)
    if moved.numel() > 4096 and moved.dim() > 1:  # repeated pixels / tokens / batch rows
        moved = compress_slices(moved, keep_dim=moved.dim() - 1)[0]
    others = list(range(moved.dim() - 1))
    if others:
        hi, lo = moved.amax(dim=others), labels_min(moved, others)
        if bool(((hi == lo) | (hi < 0)).all()):  # one label per index (NONE: padding)
            keep = hi >= 0
            return torch.arange(k)[keep], hi[keep]
    flat = moved.reshape(-1, k)
    if bool((flat == flat[:, :1]).all()):  # labels constant along ``dim`` (pixels, tokens)
        u = torch.unique(flat[:, 0])
        u = u[u >= 0]
        return torch.arange(k).repeat_interleave(len(u)), u.repeat(k)
    idx = torch.arange(k).expand_as(flat)
    keep = flat >= 0
    key = torch.unique((idx[keep] << 32) | flat[keep])
    return key >> 32, key & 0xFFFFFFFF


def label_of(ctx, tensor):
    """The channel labels of ``tensor`` in trace context ``ctx`` (parameter references
    materialised), or None."""
    lab = ctx.lab(tensor)
    if isinstance(lab, ParamRef):
        lab = lab.materialize(ctx.table)
    return lab
