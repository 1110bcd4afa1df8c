"""Atoms: the smallest removable pieces the tracer reasons about, and their couplings.

An *atom* is an integer id naming one slice of one tensor (``weight`` dim 0 index 7) or
one element of a small bare parameter (``pos_embedding[0, 3, 5]``), or a *virtual* link
used to join atoms that meet in a contraction. Activations carry, per element, the atom
it came from (``-1`` = no identity). Atom ``0`` is FIXED: anything coupled to it (the
model input and output) can never be removed.

Couplings are recorded as pairs and resolved once into connected components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NONE = -1
FIXED = 0
LABEL_DTYPE = torch.int64


@dataclass
class Block:
    """A contiguous range of atom ids and what they stand for."""

    start: int
    size: int
    kind: str  # "dim" | "elem" | "virtual"
    tensor: str = ""
    dim: int = -1
    shape: tuple[int, ...] = ()
    producer: bool = False


def distinct(t: torch.Tensor) -> torch.Tensor:
    """``t`` narrowed to its first slice along every dim it repeats by broadcasting
    (stride 0): labels made by ``expand`` (a layer's output channels over tokens) stay
    as small as their channels.

    Example:
        >>> distinct(torch.arange(3).expand(1000, 3)).shape
        torch.Size([1, 3])
    """
    for d in range(t.dim()):
        if t.shape[d] > 1 and t.stride(d) == 0:
            t = t.narrow(d, 0, 1)
    return t


def fill(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``where(a >= 0, a, b)`` for same-shaped label tensors, computed once per slice
    they both repeat (stride 0) and expanded: no full-size copy of broadcast labels.

    Example:
        >>> fill(torch.tensor([3, -1]).expand(4, 2), torch.tensor([5, 6]).expand(4, 2))[0]
        tensor([3, 6])
    """
    sa, sb = a, b
    for d in range(a.dim()):
        if a.shape[d] > 1 and a.stride(d) == 0 and b.stride(d) == 0:
            sa, sb = sa.narrow(d, 0, 1), sb.narrow(d, 0, 1)
    return torch.where(sa >= 0, sa, sb).expand(a.shape)


def cat_labels(labs: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` of label tensors, made once per slice that every input repeats by
    broadcasting (stride 0: tokens of a layer's output) and expanded.

    Example:
        >>> a, b = torch.tensor([1, 2]).expand(5, 2), torch.tensor([3]).expand(5, 1)
        >>> out = cat_labels([a, b], 1)
        >>> out.shape, out.stride(), out[0].tolist()
        (torch.Size([5, 3]), (0, 1), [1, 2, 3])
    """
    labs = [lab for lab in labs if lab.numel() or lab.dim() > 1] or labs
    nd = labs[0].dim()
    dim %= max(nd, 1)
    common = [d for d in range(nd) if d != dim and labs[0].shape[d] > 1 and all(
        lab.dim() == nd and lab.stride(d) == 0 for lab in labs)]
    if not common:
        return torch.cat(labs, dim)
    small = []
    for lab in labs:
        for d in common:
            lab = lab.narrow(d, 0, 1)
        small.append(lab)
    res = torch.cat(small, dim)
    return res.expand([res.shape[d] if d not in common else labs[0].shape[d] for d in range(nd)])


def compress_slices(a: torch.Tensor, b: torch.Tensor | None = None, keep_dim: int | None = None,
                    dims: list[int] | None = None):
    """Drop slices (along any dim, or along ``dims``) that repeat the slice before them in
    both ``a`` and ``b``: labels of pixels/tokens usually repeat (between padded borders),
    so pairs shrink from H*W*C to about C.

    Example:
        >>> x = torch.tensor([[1, 2], [3, 4], [3, 4], [3, 4], [1, 2]])
        >>> compress_slices(x)[0].tolist()
        [[1, 2], [3, 4], [1, 2]]
    """
    for d in range(a.dim()) if dims is None else dims:
        n = a.shape[d]
        if n <= 1 or d == keep_dim:
            continue
        if a.stride(d) == 0 and (b is None or b.stride(d) == 0):  # broadcast: one slice
            a, b = a.narrow(d, 0, 1), b.narrow(d, 0, 1) if b is not None else None
            continue
        if n <= 2:
            continue
        others = [k for k in range(a.dim()) if k != d]
        same = a.narrow(d, 1, n - 1) == a.narrow(d, 0, n - 1)
        if b is not None:
            same &= b.narrow(d, 1, n - 1) == b.narrow(d, 0, n - 1)
        same = same.all(dim=others) if others else same
        keep = torch.nonzero(~same).reshape(-1) + 1
        if len(keep) < n - 1:
            keep = torch.cat([torch.tensor([0]), keep])
            a = a.index_select(d, keep)
            b = b.index_select(d, keep) if b is not None else None
    return a, b


def compress_dims(a: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """``a`` without the slices along ``dims`` that repeat their neighbour there (only
    when it is large): labels of the tokens / pixels outside a reshaped block repeat.

    Example:
        >>> tokens = torch.arange(8).repeat(1000, 1)  # 1000 tokens x 8 channels
        >>> compress_dims(tokens, [0]).shape
        torch.Size([1, 8])
    """
    return a if a.numel() <= 4096 else compress_slices(a, dims=dims)[0]


class AtomTable:
    """Allocates atom ids, remembers what they mean, and collects coupling pairs.

    Example:
        >>> t = AtomTable()
        >>> a = t.dim_atoms("conv.weight", 0, 4, producer=True)
        >>> t.couple(a[:2], a[2:])
        >>> comp = t.components()
        >>> bool(comp[a[0]] == comp[a[2]]) and bool(comp[a[0]] != comp[a[1]])
        True
    """

    def __init__(self) -> None:
        self.blocks: list[Block] = [Block(0, 1, "virtual", "<fixed>")]
        self.next_id = 1
        self._dim_index: dict[tuple[str, int], int] = {}
        self._elem_index: dict[str, int] = {}
        self._pairs: list[torch.Tensor] = []
        self.inexact: list[torch.Tensor] = []
        # where the coupling being recorded comes from (the tracer sets "op in module"),
        # and, per coupling to FIXED, that place and the atoms it fixed (graph.explain)
        self.where = ""
        self.fix_log: list[tuple[str, torch.Tensor]] = []

    # -- allocation -------------------------------------------------------------------
    def _alloc(self, size: int, **kw) -> int:
        start = self.next_id
        self.blocks.append(Block(start, size, **kw))
        self.next_id += size
        return len(self.blocks) - 1

    def dim_atoms(self, tensor: str, dim: int, size: int, producer: bool = False) -> torch.Tensor:
        """Atom ids for every index of ``tensor`` along ``dim`` (allocated once)."""
        key = (tensor, dim)
        if key not in self._dim_index:
            self._dim_index[key] = self._alloc(size, kind="dim", tensor=tensor, dim=dim)
        block = self.blocks[self._dim_index[key]]
        if producer:
            block.producer = True
        return torch.arange(block.start, block.start + block.size, dtype=LABEL_DTYPE)

    def elem_atoms(self, tensor: str, shape: tuple[int, ...]) -> torch.Tensor:
        """One atom per element of a (small, bare) tensor, shaped like it."""
        if tensor not in self._elem_index:
            n = int(np.prod(shape)) if shape else 1
            self._elem_index[tensor] = self._alloc(
                n, kind="elem", tensor=tensor, shape=tuple(shape), producer=True
            )
        block = self.blocks[self._elem_index[tensor]]
        return torch.arange(block.start, block.start + block.size, dtype=LABEL_DTYPE).view(shape)

    def virtual_atoms(self, size: int) -> torch.Tensor:
        b = self.blocks[self._alloc(size, kind="virtual")]
        return torch.arange(b.start, b.start + size, dtype=LABEL_DTYPE)

    # -- coupling ---------------------------------------------------------------------
    def couple(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Record that atoms ``a[i]`` and ``b[i]`` must be removed together (broadcast)."""
        pairs = coupling_pairs(a, b)
        if pairs is not None:
            self._pairs.append(pairs)
            self.log_fixed(pairs)

    def log_fixed(self, pairs: torch.Tensor) -> None:
        """Remember which atoms ``pairs`` couple to FIXED, and where (``self.where``)."""
        hit = (pairs == FIXED).any(dim=0)
        if bool(hit.any()):
            fixed = pairs[:, hit]
            self.fix_log.append((self.where or "<trace>", torch.unique(fixed[fixed != FIXED])))

    def mark_inexact(self, labels: torch.Tensor) -> None:
        """Atoms whose removal changes outputs even when dead (normalised/softmaxed over)."""
        small = compress_slices(labels)[0] if labels.numel() > 4096 else labels
        u = torch.unique(small.reshape(-1))
        self.inexact.append(u[u > 0])

    def components(self, extra: list[torch.Tensor] | None = None) -> np.ndarray:
        """Connected component id of every atom (index = atom id; id = smallest member),
        with the ``extra`` pairs (see ``coupling_pairs``) counted besides the recorded ones."""
        n = self.next_id
        pairs = self._pairs + list(extra or [])
        if not pairs:
            return np.arange(n)
        p = torch.cat(pairs, dim=1)
        lo, hi = torch.minimum(p[0], p[1]), torch.maximum(p[0], p[1])
        key = torch.unique((lo << 32) | hi)
        return connected_components(n, (key >> 32).numpy(), (key & 0xFFFFFFFF).numpy())


def coupling_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    """The ``[2, n]`` atom pairs that coupling ``a`` with ``b`` (broadcast) records, or None.

    Example:
        >>> coupling_pairs(torch.tensor([3, 4, -1]), torch.tensor([5])).tolist()
        [[3, 4], [5, 5]]
    """
    a, b = torch.broadcast_tensors(torch.as_tensor(a), torch.as_tensor(b))
    if a.numel() > 4096:
        a, b = compress_slices(a, b)
    a, b = a.reshape(-1), b.reshape(-1)
    keep = (a >= 0) & (b >= 0) & (a != b)
    if not bool(keep.any()):
        return None
    a, b = a[keep], b[keep]
    if a.numel() > 64:
        key = torch.unique((a << 32) | b)
        a, b = key >> 32, key & 0xFFFFFFFF
    return torch.stack([a, b])


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find by repeated hooking of roots and pointer jumping (vectorised).

    Example:
        >>> connected_components(5, np.array([0, 3]), np.array([1, 4])).tolist()
        [0, 0, 2, 3, 3]
    """
    parent = np.arange(n)
    while True:
        pa, pb = parent[a], parent[b]
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        diff = lo != hi
        if not diff.any():
            return parent
        np.minimum.at(parent, hi[diff], lo[diff])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
