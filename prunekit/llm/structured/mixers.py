"""Blocks whose token mixer is not attention, and the MLP found beside it.

Hybrid and attention-free families (Mamba / Mamba-2 mixers, Jamba, Bamba, Falcon-H1,
Nemotron-H, RecurrentGemma's recurrent block, RWKV's time mixing, xLSTM, XLNet's
parameter-only attention, gated-delta-net layers of Qwen3-Next) have blocks without an
attention module whose heads the prober can match. Such a block gets
``Layout.attention = None``: its mixer is left as it is, its MLP neurons and experts are
still pruned and the whole block can still be removed.

A block has *no standard attention* when no submodule whose class name says attention
holds two or more linear layers (:func:`attention_path`), or when the one that does
declares no head size anywhere (no ``head_dim`` / ``head_size`` attribute, neither
``head_dim`` nor ``num_attention_heads`` in the config: RWKV).

The MLP is read from gradients (:func:`neuron_rows`): for every bit of the neuron index,
the output rows of each candidate producer reached from the neurons with that bit set
and from those with it clear. A row reached from exactly one side at every bit belongs
to one neuron (its code); a row reached from both sides at every bit is upstream of the
block (through the residual stream), and a row reached from both sides at some bits only,
or a producer holding both kinds, means the channels are mixed on the way (an SSM's
``B``/``C`` projections, a per-head recurrence): that linear pair is a mixer, not an MLP.
Parameters of other modules sized by the channels (a depthwise ``conv1d``, ``A_log``)
also mark a mixer (:func:`channels_used_elsewhere`).

Example:
    >>> from torch import nn
    >>> class MambaMixer(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.in_proj, self.out_proj = nn.Linear(4, 16), nn.Linear(8, 4)
    >>> attention_path(nn.ModuleDict({"mixer": MambaMixer()})) is None
    True
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import is_prunable_linear, weight_2d
from prunekit.llm.structured.layout import MLPLayout

_ATTENTION_NAME = re.compile(r"attention|attn", re.IGNORECASE)
_NORM_NAME = re.compile(r"norm", re.IGNORECASE)


def _says_attention(block: nn.Module, name: str, module: nn.Module) -> bool:
    """The module's class name says attention, or it is an entry of a module list / dict whose
    own name does (LongCat-Flash's ``self_attn.0``, a ``LongcatFlashMLA``)."""
    if _ATTENTION_NAME.search(type(module).__name__):
        return True
    parent, _, _ = name.rpartition(".")
    container = block.get_submodule(parent) if parent else None
    return isinstance(container, (nn.ModuleList, nn.ModuleDict)) and bool(
        _ATTENTION_NAME.search(parent.rpartition(".")[2]))


def _ran_linears(module: nn.Module, name: str, ran: set[str] | None) -> int:
    return sum(1 for q, m in module.named_modules() if is_prunable_linear(m) and (ran is None or f"{name}.{q}" in ran))


def attention_path(block: nn.Module, ran: set[str] | None = None) -> str | None:
    """The smallest attention submodule (:func:`_says_attention`) holding two or more linears,
    or None. With ``ran`` (paths of the linears a probe forward ran), only linears that ran
    count: an idle cross-attention is not the block's attention."""
    best: tuple[int, int, str] | None = None
    for name, module in block.named_modules():
        if not name or not _says_attention(block, name, module):
            continue
        n = _ran_linears(module, name, ran)
        if n >= 2 and (best is None or (n, -name.count(".")) < best[:2]):
            best = (n, -name.count("."), name)
    return None if best is None else best[2]


def attention_paths(block: nn.Module, ran: set[str] | None = None) -> list[str]:
    """Every attention of the block: :func:`attention_path`, then the other entries of the
    module list / dict that holds it, of its class and with two or more linears that ran
    (LongCat-Flash's ``self_attn.0`` and ``self_attn.1``); empty when there is none.

    Example:
        >>> class Attention(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.q, self.o = nn.Linear(4, 4), nn.Linear(4, 4)
        >>> block = nn.Module(); block.attn = nn.ModuleList([Attention(), Attention()])
        >>> attention_paths(block)
        ['attn.0', 'attn.1']
    """
    first = attention_path(block, ran)
    if first is None:
        return []
    parent, _, _ = first.rpartition(".")
    container = block.get_submodule(parent) if parent else None
    if not isinstance(container, (nn.ModuleList, nn.ModuleDict)):
        return [first]
    kind = type(block.get_submodule(first))
    names = [f"{parent}.{key}" for key, m in container.named_children()
             if type(m) is kind and _ran_linears(m, f"{parent}.{key}", ran) >= 2]
    return [first] + [p for p in names if p != first]


def inside_attention(block: nn.Module, path: str) -> bool:
    """True when a module above ``path`` (inside ``block``) is an attention module by class name.

    Example:
        >>> class SelfAttention(nn.Module): pass
        >>> block = nn.Module(); block.attn = SelfAttention(); block.attn.experts = nn.Linear(2, 2)
        >>> inside_attention(block, "attn.experts"), inside_attention(block, "attn")
        (True, False)
    """
    parts = path.split(".")
    return any(_ATTENTION_NAME.search(type(block.get_submodule(".".join(parts[:i]))).__name__)
               for i in range(1, len(parts)))


def declares_head_size(attention: nn.Module, config: Any) -> bool:
    """True when the module or the config says how many channels a head has."""
    for attr in ("head_dim", "head_size", "attention_head_size"):
        value = getattr(attention, attr, None)
        if isinstance(value, int) and value > 0:
            return True
    for attr in ("head_dim", "num_attention_heads"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return True
    return False


def _out_in(module: nn.Module) -> tuple[int, int]:
    w = weight_2d(module)
    return int(w.shape[0]), int(w.shape[1])


def rows_reached(target: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per leaf, a bool per output row: does ``target.sum()`` depend on it."""
    grads = torch.autograd.grad(target.sum(), leaves, retain_graph=True, allow_unused=True)
    return [torch.zeros(leaf.shape[-1], dtype=torch.bool) if g is None
            else g.detach().abs().reshape(-1, g.shape[-1]).sum(0) > 0 for leaf, g in zip(leaves, grads)]


def neuron_rows(rec: dict, inp: str, outs: list[str], size: int) -> dict[str, tuple[tuple[int, ...], ...]] | None:
    """Rows of each neuron in the producers among ``outs``; None when the channels mix.

    Producers whose rows are all upstream (reached from every neuron) or unreached are
    left out of the result; an empty result means ``inp`` has no producer among ``outs``.
    """
    x = rec["inputs"][inp]
    leaves = [rec["leaves"][p] for p in outs]
    weight = torch.randn(size, generator=torch.Generator().manual_seed(1)).abs() + 0.5
    bits = max(1, (size - 1).bit_length())
    ones = [torch.zeros(bits, leaf.shape[-1], dtype=torch.bool) for leaf in leaves]
    zeros = [torch.zeros(bits, leaf.shape[-1], dtype=torch.bool) for leaf in leaves]
    for bit in range(bits):
        cols = torch.tensor([(j >> bit) & 1 for j in range(size)], dtype=x.dtype)
        for side, mask in ((ones, cols), (zeros, 1 - cols)):
            for hits, hit in zip(side, rows_reached(x * weight * mask, leaves)):
                hits[bit] = hit
    result: dict[str, tuple[tuple[int, ...], ...]] = {}
    silent = []  # producers no gradient reached (zero weights downstream): elementwise order assumed
    for p, on, off, leaf in zip(outs, ones, zeros, leaves):
        both, either = on & off, on | off
        exclusive = (on ^ off).all(0)
        upstream = both.all(0)
        unreached = ~either.any(0)
        if not bool((exclusive | upstream | unreached).all()):
            return None  # reached from both sides at some bits only: channels mix on the way
        if not bool(exclusive.any()):
            if bool(unreached.all()) and p.rpartition(".")[0] == inp.rpartition(".")[0]:
                silent.append(p)  # a sibling of the reading projection (not another mixer's input)
            continue  # upstream of the block, or unrelated
        if bool(upstream.any()):
            return None  # one projection feeding the neurons both directly and through a mixer
        code = (on.long() << torch.arange(bits).unsqueeze(1)).sum(0)
        copies = leaf.shape[-1] // size
        rows = exclusive.nonzero().flatten().tolist()
        if len(rows) < leaf.shape[-1]:  # a dead activation hides rows: only the elementwise order fits
            if any(int(code[r]) != r % size for r in rows):
                return None
            result[p] = tuple(tuple(j + c * size for c in range(copies)) for j in range(size))
            continue
        owners: list[list[int]] = [[] for _ in range(size)]
        for r in rows:
            if int(code[r]) >= size:
                return None
            owners[int(code[r])].append(r)
        if any(len(o) != copies for o in owners):
            return None
        result[p] = tuple(tuple(o) for o in owners)
    positional = {p: tuple(tuple(j + c * size for c in range(leaf.shape[-1] // size)) for j in range(size))
                  for p, leaf in zip(outs, leaves)}
    if result and all(rows == positional[p] for p, rows in result.items()):
        result.update({p: positional[p] for p in silent})  # a gate whose partner is all zeros (xLSTM init)
    return result


def common_parent(paths: list[str]) -> str:
    """The deepest module path holding every one of ``paths`` (dotted parameter-owner names)."""
    parts = [p.split(".")[:-1] for p in paths]
    common: list[str] = []
    for names in zip(*parts):
        if len(set(names)) != 1:
            break
        common.append(names[0])
    return ".".join(common)


def channels_used_elsewhere(block: nn.Module, linears: list[str], size: int, skip: tuple[str, ...]) -> str | None:
    """A parameter beside the MLP ``linears`` sized by its ``size`` channels, or None.

    Looks inside the smallest module holding the linears, outside ``skip`` (attention,
    experts); norms are ignored. Such a parameter (a depthwise ``conv1d``, ``A_log``)
    means the channels feed more than an elementwise activation: a mixer.
    """
    root = common_parent(linears)
    parent = block.get_submodule(root) if root else block
    for name, module in parent.named_modules():
        full = f"{root}.{name}" if root and name else (name or root)
        if full in linears or any(full == s or full.startswith(s + ".") for s in skip if s):
            continue
        if _NORM_NAME.search(type(module).__name__):
            continue
        for pname, param in module.named_parameters(recurse=False):
            if size in param.shape:
                return f"{full}.{pname}" if full else pname
    return None


def mlp_layout(rec: dict, block: nn.Module, skip_prefixes: tuple[str, ...], skip: set[str]) -> MLPLayout | None:
    """The block's dense MLP (of the linears mapping back to the hidden size whose producers
    pass the gradient and parameter checks, the last one not much narrower than the widest:
    :func:`chosen_mlp`), or None when there is none."""
    hidden = rec["hidden"]

    def outside(p: str) -> bool:
        return p not in skip and not any(p.startswith(s + ".") for s in skip_prefixes if s)

    order = [p for p in rec["order"] if outside(p)]
    order = list(dict.fromkeys(order))
    candidates: list[tuple[MLPLayout, int]] = []
    for inp in reversed([p for p in order if _out_in(rec["linears"][p])[0] == hidden]):
        size = _out_in(rec["linears"][inp])[1]
        before = order[: order.index(inp)]
        outs = [p for p in before if _out_in(rec["linears"][p])[1] == hidden
                and _out_in(rec["linears"][p])[0] % size == 0]
        if not outs:
            continue
        rows = neuron_rows(rec, inp, outs, size)
        if not rows:
            continue
        if channels_used_elsewhere(block, [inp, *rows], size, skip_prefixes) is not None:
            continue
        candidates.append((MLPLayout(inp, rows), size))
    return chosen_mlp(candidates)


def chosen_mlp(candidates: list[tuple[MLPLayout, int]]) -> MLPLayout | None:
    """Of the MLP candidates ``(layout, width)`` in reverse block order, the last in the block
    at least a quarter as wide as the widest: a narrow gate after the MLP (Gemma 4's per-layer
    input gate, 8 of 96) is passed over, and the choice stays the same after the MLP itself is
    pruned (up to 75%), so a pruned block is read back as it was pruned (LongCat-Flash's two
    equal MLPs: the widest would flip to the unpruned one).

    Example:
        >>> a, b = MLPLayout("mlp.down", {}), MLPLayout("gate.down", {})
        >>> chosen_mlp([(b, 8), (a, 96)]) is a, chosen_mlp([(a, 72), (b, 96)]) is a
        (True, True)
    """
    if not candidates:
        return None
    widest = max(size for _, size in candidates)
    return next(layout for layout, size in candidates if 4 * size >= widest)
