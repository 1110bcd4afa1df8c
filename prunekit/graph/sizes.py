"""Record the Python integers a forward passes as sizes, and which channels they count.

Many modules keep channel counts as Python attributes (``self.head_dim``,
``self.split_sizes``, ``self.shape = (dim, 1, 1)``) and pass them to ``view`` /
``reshape`` / ``expand`` / ``split`` / ``narrow`` / slicing, or as a depthwise
``F.conv2d``'s ``groups``. After a cut those integers
are stale. While tracing, a ``TorchFunctionMode`` (``prunekit.graph.size_recorder``)
sees each such call as written in
Python (``-1`` still ``-1``, before ``reshape`` checks the shape), numbers it per module
path, and records every explicit integer together with the channel labels of the dim
it measures. After the cut, :func:`expected_sizes` says what each integer must become:
the number of indices of its range that survive. ``prunekit.surgery.stale_sizes`` then
finds the attributes that hold the stale integers.

Example:
    >>> import torch
    >>> call = parse_call("view", (torch.zeros(2, 6), 2, 3, -1), {})
    >>> call.values, call.rebuild([2, 3, 1])[0][1:]
    ([2, 3, -1], (2, 3, 1))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prunekit.graph.labels import per_index_pairs

SIZE_CALLS = {"view", "reshape", "expand", "split", "__getitem__", "narrow", "conv1d", "conv2d",
              "conv3d"}
_OPEN = 1 << 40  # a slice stop at least this large means "to the end"


def size_call_name(func: Any) -> str | None:
    """The family of a torch function that takes sizes (None for every other function)."""
    name = getattr(func, "__name__", None)
    return name if name in SIZE_CALLS else None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class Slot:
    """One explicit integer of a call: ``values[where]``; it counts the indices
    ``[lo, hi)`` of dim ``dim`` of the output (``side="out"``) or input (``"in"``)."""

    where: int
    old: int
    side: str
    dim: int
    lo: int
    hi: int


@dataclass
class Call:
    """A size-taking call split into its integers (``values``) and a way to rebuild it."""

    name: str
    tensor: torch.Tensor
    values: list
    slots: list[Slot]
    rebuild: Callable[[list], tuple[tuple, dict]]


def _as_like(seq: Any, values: list) -> Any:
    return tuple(values) if isinstance(seq, (tuple, torch.Size)) else type(seq)(values)


def _shape_call(name, args, kwargs) -> Call | None:
    key = "shape" if "shape" in kwargs else "size" if "size" in kwargs else None
    if key is not None:
        seq = kwargs[key]

        def rebuild(v):
            return args, {**kwargs, key: _as_like(seq, v)}
    elif len(args) == 2 and isinstance(args[1], (tuple, list, torch.Size)):
        seq = args[1]

        def rebuild(v):
            return (args[0], _as_like(seq, v)), kwargs
    else:
        seq = args[1:]

        def rebuild(v):
            return (args[0], *v), kwargs
    values = list(seq)
    slots = [Slot(i, v, "out", i, 0, v) for i, v in enumerate(values) if is_int(v) and v > 1]
    return Call(name, args[0], values, slots, rebuild)


def _split_call(name, args, kwargs) -> Call | None:
    x = args[0]
    key = next((k for k in ("split_size_or_sections", "split_size") if k in kwargs), None)
    sections = kwargs[key] if key is not None else args[1]
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
    if not is_int(dim):
        return None
    dim %= max(x.dim(), 1)

    def rebuild(v, a=args, kw=kwargs, k=key, seq=sections):
        new = v[0] if is_int(seq) else type(seq)(v)
        if k is not None:
            return a, {**kw, k: new}
        return (a[0], new, *a[2:]), kw

    if is_int(sections):
        return Call(name, x, [sections], [Slot(0, sections, "in", dim, 0, sections)], rebuild)
    if not isinstance(sections, (list, tuple)) or not all(is_int(s) for s in sections):
        return None
    slots, lo = [], 0
    for i, s in enumerate(sections):
        slots.append(Slot(i, s, "in", dim, lo, lo + s))
        lo += s
    return Call(name, x, list(sections), slots, rebuild)


def _getitem_call(name, args, kwargs) -> Call | None:
    x, index = args[0], args[1]
    items = index if isinstance(index, tuple) else (index,)
    if any(not (isinstance(i, (slice, type(Ellipsis))) or i is None or is_int(i)) for i in items):
        return None  # tensor / list / bool indexing: no sizes to follow
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    values, slots, pieces, dim = [], [], [], 0
    for i in items:
        if i is Ellipsis:
            dim += x.dim() - consumed
            pieces.append(i)
            continue
        if i is None:
            pieces.append(i)
            continue
        if isinstance(i, slice) and i.step in (None, 1):
            for attr in ("start", "stop"):
                v = getattr(i, attr)
                if is_int(v) and 0 < v < _OPEN:
                    slots.append(Slot(len(values), v, "in", dim, 0, v))
                values.append(v)
            pieces.append("slice")
        else:
            pieces.append(i)
        dim += 1
    if not slots:
        return None

    def rebuild(v, a=args, kw=kwargs, pieces=tuple(pieces), items=items):
        it, out = iter(v), []
        for p, orig in zip(pieces, items):
            out.append(slice(next(it), next(it), orig.step) if p == "slice" else orig)
        new = tuple(out) if isinstance(a[1], tuple) else out[0]
        return (a[0], new, *a[2:]), kw

    return Call(name, x, values, slots, rebuild)


def _narrow_call(name, args, kwargs) -> Call | None:
    x = args[0]
    if len(args) < 4 or not all(is_int(v) for v in args[1:4]):
        return None
    dim, start, length = args[1] % max(x.dim(), 1), args[2], args[3]
    slots = [Slot(0, start, "in", dim, 0, start)] if start > 0 else []
    slots.append(Slot(1, length, "in", dim, start, start + length))

    def rebuild(v, a=args, kw=kwargs):
        return (a[0], a[1], v[0], v[1], *a[4:]), kw

    return Call(name, x, [start, length], slots, rebuild)


def _conv_call(name, args, kwargs) -> Call | None:
    """``F.conv2d(x, w, ..., groups=self.channels)``: a depthwise conv's groups count its
    output channels (the recorder keeps it only when ``groups == w.shape[0]``)."""
    groups = kwargs.get("groups", args[6] if len(args) > 6 else None)
    if not is_int(groups) or groups < 2:
        return None

    def rebuild(v, a=args, kw=kwargs):
        if "groups" in kw:
            return a, {**kw, "groups": v[0]}
        return (*a[:6], v[0], *a[7:]), kw

    return Call(name, args[0], [groups], [Slot(0, groups, "out", 1, 0, groups)], rebuild)


def parse_call(name: str, args: tuple, kwargs: dict) -> Call | None:
    """Split a size-taking call into its integers; None when it takes none we follow."""
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    try:
        if name in ("view", "reshape", "expand"):
            call = _shape_call(name, args, kwargs)
        elif name == "split":
            call = _split_call(name, args, kwargs)
        elif name == "__getitem__":
            call = _getitem_call(name, args, kwargs)
        elif name.startswith("conv"):
            call = _conv_call(name, args, kwargs)
        else:
            call = _narrow_call(name, args, kwargs)
    except (IndexError, TypeError):
        return None
    if call is None or not call.slots:
        return None
    return call


# -- recording --------------------------------------------------------------------------
@dataclass
class DimSource:
    """Where a dim's channel labels come from: ``(index, atom)`` pairs of an activation,
    or dim ``pdim`` of parameter ``param`` (resolved once the trace is complete)."""

    size: int
    index: np.ndarray | None = None
    atoms: np.ndarray | None = None
    param: str | None = None
    pdim: int = -1


@dataclass
class SizeRecord:
    """One traced size-taking call: its integers, the slots that count channels, and the
    module stack it ran in (outermost first, ``""`` = the model)."""

    name: str
    stack: tuple[str, ...]
    values: list
    slots: list[Slot]
    dims: dict[tuple[str, int], DimSource] = field(default_factory=dict)
    # (input channel dim, key of an output dim in ``dims``, k, held): count(input) must
    # stay k * count(output); ``held``: the integer is also an attribute of the module
    ties: list[tuple[DimSource, tuple[str, int], int, bool]] = field(default_factory=list)


# -- after the trace --------------------------------------------------------------------
def _translation(src, dst) -> np.ndarray:
    """Atom ids of table ``src`` -> the same tensor slices in table ``dst`` (-1: none)."""
    trans = np.full(src.next_id, -1, dtype=np.int64)
    trans[0] = 0
    for b in src.blocks[1:]:
        if b.kind == "dim" and (b.tensor, b.dim) in dst._dim_index:
            d = dst.blocks[dst._dim_index[(b.tensor, b.dim)]]
        elif b.kind == "elem" and b.tensor in dst._elem_index:
            d = dst.blocks[dst._elem_index[b.tensor]]
        else:
            continue
        if d.size == b.size:
            trans[b.start : b.start + b.size] = np.arange(d.start, d.start + d.size)
    return trans


def _param_pairs(table, name: str, pdim: int, size: int):
    if (name, pdim) in table._dim_index:
        b = table.blocks[table._dim_index[(name, pdim)]]
        return np.arange(size), np.arange(b.start, b.start + b.size)
    if name in table._elem_index:
        b = table.blocks[table._elem_index[name]]
        idx, atoms = per_index_pairs(table.elem_atoms(name, b.shape), pdim)
        return idx.numpy(), atoms.numpy()
    return None


def finalize(records: dict, src_table, dst_table, comp: np.ndarray) -> dict:
    """Resolve recorded labels to component ids of the final trace (``comp``): the
    ``atoms`` of every ``DimSource`` become components, parameter dims are looked up."""
    trans = None if src_table is dst_table else _translation(src_table, dst_table)
    out = {}
    for key, rec in records.items():
        dims = {}
        for dkey, src in rec.dims.items():
            if src.param is not None:
                pairs = _param_pairs(dst_table, src.param, src.pdim, src.size)
                if pairs is None:
                    continue
                index, atoms = pairs
            else:
                index, atoms = src.index, src.atoms
                if trans is not None:
                    atoms = trans[atoms]
            comps = np.where(atoms >= 0, comp[np.clip(atoms, 0, len(comp) - 1)], -1)
            dims[dkey] = DimSource(src.size, index=index.astype(np.int64), atoms=comps)
        ties = []
        for src, dkey, k, held in rec.ties:
            atoms = trans[src.atoms] if trans is not None else src.atoms
            comps = np.where(atoms >= 0, comp[np.clip(atoms, 0, len(comp) - 1)], -1)
            if dkey in dims:
                ties.append((DimSource(src.size, index=src.index, atoms=comps), dkey, k, held))
        slots = [s for s in rec.slots if (s.side, s.dim) in dims]
        if slots or ties:
            out[key] = SizeRecord(rec.name, rec.stack, rec.values, slots, dims, ties)
    return out


def expected_sizes(records: dict, removed: np.ndarray) -> dict:
    """For every record, the value each slot must have once the components flagged in
    ``removed`` are gone: the indices of its range with at least one label, all removed,
    no longer count.

    Example:
        >>> src = DimSource(4, index=np.array([0, 1, 2, 3]), atoms=np.array([5, 6, 5, 6]))
        >>> rec = SizeRecord("split", ("",), [2, 2], [Slot(0, 2, "in", 1, 0, 2),
        ...                  Slot(1, 2, "in", 1, 2, 4)], {("in", 1): src})
        >>> removed = np.zeros(8, dtype=bool); removed[6] = True
        >>> expected_sizes({("<model>", 0): rec}, removed)
        {('<model>', 0): [1, 1]}
    """
    out = {}
    for key, rec in records.items():
        gone = {}
        for dkey, src in rec.dims.items():
            c = src.atoms
            hit = np.zeros(len(c), dtype=np.float64)
            ok = (c >= 0) & (c < len(removed))
            hit[ok] = removed[c[ok]]
            total = np.bincount(src.index, minlength=src.size)
            dead = np.bincount(src.index, weights=hit, minlength=src.size)
            gone[dkey] = np.cumsum(np.r_[0, (total > 0) & (dead == total)])
        out[key] = [
            s.old - int(gone[(s.side, s.dim)][s.hi] - gone[(s.side, s.dim)][s.lo])
            for s in rec.slots
        ]
    return out
