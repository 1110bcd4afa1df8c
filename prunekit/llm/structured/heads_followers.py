"""Tensors that follow attention units and MLP neurons besides the projections themselves.

Many families keep per-head or per-neuron tensors next to q/k/v/o and up/gate/down:
OLMo-2's ``q_norm`` / ``k_norm`` over the full projection width, BitNet's sub-norms
before ``o_proj`` / ``down_proj``, gpt-oss's per-head attention ``sinks``, Dory's
per-neuron ``suv_gate`` scales, AFMoE's output ``gate_proj`` (one row per head channel),
grouped convolutions over q/k/v channels. They are found here, not listed: one probe
forward (:func:`~prunekit.llm.structured.discover.probe_block`) makes every candidate
tensor of the attention (MLP) module a gradient leaf, and bit-coded gradients of the
output projection's input columns say which entries each unit reaches. A tensor is a
follower when, along one of its dims, every index is reached by exactly one unit and
every unit owns the same number of indices; a removal then slices it with the same
units (:func:`~prunekit.llm.structured.surgery.prune_heads`). Tensors every unit reaches
(a per-head-dim ``q_norm`` shared by all heads, norms before the projections) are not
followers and stay whole.

Example:
    >>> import torch
    >>> x = torch.ones(2, 4, requires_grad=True)           # 2 units of 2 columns
    >>> w = torch.ones(4, requires_grad=True)              # a per-channel scale
    >>> out = x * w
    >>> unit_owners(out, ((0, 1), (2, 3)), [w])[0].tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import is_prunable_linear
from prunekit.llm.structured.heads_probe import nonzero_parameters
from prunekit.llm.structured.mixers import common_parent

SHARED = -2      # an entry reached by more than one unit
UNREACHED = -1   # an entry no unit reaches


def unit_owners(target: torch.Tensor, cols: tuple[tuple[int, ...], ...],
                tensors: list[torch.Tensor], reduce_rows: list[bool] | None = None) -> list[torch.Tensor]:
    """Per tensor, the unit owning each entry (``UNREACHED`` / ``SHARED`` otherwise).

    ``target[..., cols[u]]`` are unit ``u``'s channels; gradients of bit-coded sums of them
    (each bit and its complement) tell, per entry of each tensor, which units reach it.
    With ``reduce_rows[i]`` the tensor is a linear's output (tokens x rows): owners are
    per row, over all tokens.
    """
    reduce_rows = reduce_rows or [False] * len(tensors)
    n = len(cols)
    unit = torch.full((target.shape[-1],), -1, dtype=torch.long)
    for u, c in enumerate(cols):
        unit[list(c)] = u
    inside = (unit >= 0).to(target.dtype)
    weight = (torch.randn(target.shape[-1], generator=torch.Generator().manual_seed(3)).abs() + 0.5).to(target.dtype)

    def hits(select: torch.Tensor) -> list[torch.Tensor]:
        grads = torch.autograd.grad((target * (weight * select).to(target.device)).sum(), tensors,
                                    retain_graph=True, allow_unused=True)
        out = []
        for t, g, rows in zip(tensors, grads, reduce_rows):
            shape = t.shape[-1:] if rows else t.shape
            if g is None:
                out.append(torch.zeros(shape, dtype=torch.bool))
            else:
                hit = g.detach().cpu() != 0
                out.append(hit.reshape(-1, hit.shape[-1]).any(0) if rows else hit)
        return out

    reached = hits(inside)
    codes = [torch.zeros(r.shape, dtype=torch.long) for r in reached]
    mixed = [torch.zeros(r.shape, dtype=torch.bool) for r in reached]
    for bit in range(max(1, (n - 1).bit_length())):
        on = ((unit >> bit) & 1).to(target.dtype) * inside
        off = (1 - ((unit >> bit) & 1)).to(target.dtype) * inside
        for code, mix, a, b in zip(codes, mixed, hits(on), hits(off)):
            code += a.long() << bit
            mix |= a & b
    out = []
    for r, code, mix in zip(reached, codes, mixed):
        owner = torch.where(r, code, torch.full_like(code, UNREACHED))
        owner[r & (mix | (code >= n))] = SHARED
        out.append(owner)
    return out


def partition(owner: torch.Tensor, n_units: int) -> tuple[int, tuple[tuple[int, ...], ...]] | None:
    """``(dim, indices of each unit along dim)`` if some dim splits ``owner`` into equal unit slabs.

    Indices no unit reaches (a dead activation on the probe tokens) are placed by the
    contiguous or strided order the reached ones follow, else the dim does not split.

    Example:
        >>> partition(torch.tensor([[1, 1], [0, 0], [-1, 0], [1, -1]]), 2)
        (0, ((1, 2), (0, 3)))
        >>> partition(torch.tensor([0, -1, 1, 1]), 2)
        (0, ((0, 1), (2, 3)))
        >>> partition(torch.tensor([[1, 1], [0, 0], [1, 0]]), 2) is None
        True
    """
    for dim in range(owner.dim()):
        size = owner.shape[dim]
        if size < n_units:
            continue
        unit_of: list[int | None] = []
        for i in range(size):
            vals = owner.select(dim, i)
            seen = set(vals[vals != UNREACHED].tolist())
            if len(seen) > 1 or SHARED in seen:
                break
            unit_of.append(seen.pop() if seen else None)
        else:
            if 2 * len({u for u in unit_of if u is not None}) < n_units:
                continue  # most units must be seen owning an index; the rest (dead on the probe) inferred
            if None in unit_of:
                unit_of = _fill_order(unit_of, n_units)
            if unit_of is None:
                continue
            per: list[list[int]] = [[] for _ in range(n_units)]
            for i, u in enumerate(unit_of):
                per[u].append(i)
            if len({len(p) for p in per}) == 1 and per[0]:
                return dim, tuple(tuple(p) for p in per)
    return None


def _fill_order(unit_of: list[int | None], n_units: int) -> list[int] | None:
    """The contiguous or strided unit order that the known entries follow, if one does."""
    size = len(unit_of)
    if size % n_units:
        return None
    per = size // n_units
    for order in ([i // per for i in range(size)], [i % n_units for i in range(size)]):
        if all(u is None or u == o for u, o in zip(unit_of, order)):
            return order
    return None


def _candidates(block: nn.Module, region: str, skip: set[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Floating parameters, saved buffers and linear layers under ``region`` that are not in ``skip``."""
    root = block.get_submodule(region) if region else block
    prefix = f"{region}." if region else ""
    params: dict[str, torch.Tensor] = {}
    linears: list[str] = []
    for name, module in root.named_modules():
        path = prefix + name if name else region
        if any(path == s or path.startswith(s + ".") for s in skip):
            continue
        if name and is_prunable_linear(module):
            linears.append(path)
            continue
        transient = getattr(module, "_non_persistent_buffers_set", set())
        tensors = list(module.named_parameters(recurse=False)) + [  # saved buffers (MiniMax's per-head decays)
            (k, b) for k, b in module.named_buffers(recurse=False) if b is not None and k not in transient]
        for key, p in tensors:
            if p.is_floating_point() and p.numel() > 1 and p.is_leaf:
                params[f"{path}.{key}" if path else key] = p
    return params, linears


def _by_head_count(shape: torch.Size, n_units: int, per_unit: int) -> tuple[int, tuple] | None:
    """The one dim sized like the head (else group) count, split by unit: for tensors the probe cannot reach."""
    for width in (per_unit, 1):  # a dim with one entry per head, else one per key/value group
        dims = [d for d, n in enumerate(shape) if n == n_units * width]
        if len(dims) == 1:
            return dims[0], tuple(tuple(range(u * width, (u + 1) * width)) for u in range(n_units))
    return None


def find_followers(model: nn.Module, block: nn.Module, region: str, target_linear: str,
                   cols: tuple[tuple[int, ...], ...], skip: set[str], per_unit: int = 0,
                   sources: dict[str, tuple[tuple[int, ...], ...]] | None = None,
                   through: tuple[str, ...] = (), readers_of: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Followers of the units ``cols`` (input columns of ``target_linear``) inside ``region``.

    A tensor of the region the probe never reaches (MiniMax's per-head decay slopes, used
    only beyond the probe's 8 tokens) follows by shape when ``per_unit`` (heads per unit)
    is given and exactly one of its dims has the head count.

    A linear of the region that reads exactly a head-indexed projection's output
    (``sources``: path -> per-unit rows; Doge's ``dt_proj`` reads the values) loses the
    removed units' input columns too; ``readers_of`` are linears of the layout itself (in
    ``skip``) checked the same way (Doge's ``dt_proj`` is one of the head projections
    once its per-head scale ``A`` is live in the probe).

    Returns ``(params, rows)``: ``params[path] = (dim, per-unit indices)`` for tensors,
    ``rows[linear] = per-unit output rows`` for linear layers. Empty when the region has
    no candidate (no probe is run then).
    """
    from prunekit.llm.structured.discover import probe_block

    params, linears = _candidates(block, region, skip)
    if not params and not linears:
        return {}, {}
    saved = {k: p.requires_grad for k, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(True)
        with nonzero_parameters(block):  # as the layout probe: an all-zero scale hides no unit
            rec = probe_block(model, block, through=through)
            target = rec["inputs"].get(target_linear)
            if target is None or not target.requires_grad:  # the block ran without autograd
                return {}, {}
            linears = [p for p in linears if p in rec["leaves"]]
            tensors = list(params.values()) + [rec["leaves"][p] for p in linears]
            flags = [False] * len(params) + [True] * len(linears)
            owners = unit_owners(target, cols, tensors, flags)
            own = [p for p in readers_of if p in rec["leaves"] and p not in linears]
            readers = _readers(block, rec, linears + own, sources or {})
    finally:
        for k, p in params.items():
            p.requires_grad_(saved[k])
    found_params: dict[str, Any] = dict(readers)
    found_rows: dict[str, Any] = {}
    for (name, _), owner in zip(params.items(), owners[: len(params)]):
        split = partition(owner, len(cols))
        if split is None and per_unit and bool((owner == UNREACHED).all()) and _direct(name, region):
            split = _by_head_count(owner.shape, len(cols), per_unit)
        if split is not None:
            found_params[name] = split
    for name, owner in zip(linears, owners[len(params):]):
        split = partition(owner, len(cols))
        if split is None and per_unit and bool((owner == UNREACHED).all()) and _direct(name, region):
            split = _by_head_count(owner.shape, len(cols), per_unit)  # Doge's dt_proj feeds a mask
        if split is not None and split[0] == owner.dim() - 1:
            found_rows[name] = split[1]
    return found_params, found_rows


def _direct(name: str, region: str) -> bool:
    """True when ``name`` (a tensor, or a linear) belongs directly to the ``region`` module.

    Only those follow the head count by shape when the probe cannot reach them: a
    submodule the short probe never runs (DeepSeek-V4's compressor, used from 128 tokens
    on) has its own sizes, which a tiny config can make equal to the head count.
    """
    return name.rpartition(".")[0] == region


def _readers(block: nn.Module, rec: dict, linears: list[str],
             sources: dict[str, tuple[tuple[int, ...], ...]]) -> dict[str, tuple[int, tuple]]:
    """``{linear.weight: (input dim, per-unit columns)}`` for linears whose input is a source's output."""
    from prunekit.llm.blocks import _is_conv1d

    out = {}
    for name in linears:
        x = rec["inputs"].get(name)
        for src, units in sources.items():
            leaf = rec["leaves"].get(src)
            if x is None or leaf is None or x.shape[-1] != leaf.shape[-1]:
                continue
            if sum(len(u) for u in units) != leaf.shape[-1]:
                continue  # shared rows (multi-query) are not split by unit
            width = leaf.shape[-1]
            same = x.numel() == leaf.numel() and torch.equal(x.detach().reshape(-1, width),
                                                             leaf.detach().reshape(-1, width))
            if same:
                out[f"{name}.weight"] = (0 if _is_conv1d(block.get_submodule(name)) else 1, units)
                break
    return out



def has_extra_tensors(block: nn.Module, layout: Any) -> bool:
    """True when the attention module holds tensors besides its q/k/v/o projections.

    The name table assumes plain grouped-query attention; an attention module with more
    (DiffLlama's paired heads and lambdas, per-head norms or sinks) is probed instead.
    """
    att = layout.attention
    if not att.o:
        return False
    params, linears = _candidates(block, att.module, set(att.rows) | {att.o})
    return bool(params or linears)


def with_followers(model: nn.Module, block: nn.Module, layout: Any) -> Any:
    """``layout`` with the follower tensors of its attention units and MLP neurons added."""
    import dataclasses

    def followed(att: Any) -> Any:
        if att is None or not att.o:  # None: an SSM / recurrent mixer, left as it is; no o: routed heads
            return att
        skip = set(att.rows) | {att.o}
        params, rows = find_followers(model, block, att.module, att.o, att.cols, skip, att.heads_per_unit,
                                      sources={p: r for p, r in att.rows.items() if not att.shared.get(p)},
                                      through=att.through, readers_of=tuple(att.rows))
        if params or rows:
            att = dataclasses.replace(att, params={**att.params, **params}, rows={**att.rows, **rows})
        return att

    att = followed(layout.attention)
    more = tuple(followed(a) for a in layout.more_attention)
    mlp = layout.mlp
    if mlp is not None:
        region = common_parent([mlp.inp, *mlp.outs])
        skip = {mlp.inp, *mlp.outs} | {a.module for a in layout.attentions}
        if layout.experts is not None:
            skip |= {layout.experts.module, layout.experts.router}
        cols = tuple((j,) for j in range(mlp.size))
        params, rows = find_followers(model, block, region, mlp.inp, cols, skip)
        if params or rows:
            mlp = dataclasses.replace(mlp, params={**mlp.params, **params}, outs={**mlp.outs, **rows})
    return dataclasses.replace(layout, attention=att, mlp=mlp, more_attention=more)
