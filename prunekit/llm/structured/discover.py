"""Find a block's attention units and MLP neurons by probing it, for families the name table lacks.

One short forward of the model (8 random tokens) runs with hooks on the block's linear
layers: each projection's output is replaced by a leaf tensor, so autograd answers
"which output rows feed this input column" exactly:

* the attention module is the smallest module whose class name says attention and that
  holds two or more linears; its output projection is the last one called that maps back
  to the hidden size, the projections before it that read the hidden states are q/k/v
  (separate, or fused as in GPT-NeoX ``query_key_value``, Phi-3 ``qkv_proj``, Falcon);
* for each head (``head_dim`` consecutive input columns of the output projection) the
  rows of every q/k/v projection with a non-zero gradient belong to it; heads sharing
  rows (grouped-query attention, fused per-group layouts) form one unit;
* outside attention, the MLP's output projection is the last linear mapping back to the
  hidden size; the linears before it whose width is a multiple of its input width are
  ``up`` / ``gate`` / fused ``gate_up`` (Phi ``fc1``/``fc2`` included), and each neuron's
  rows are read from gradients of a few bit-coded column sums.

Anything that does not fit (rows shared across units, no attention module) raises
:class:`~prunekit.errors.UnsupportedOpError` naming the module and what was not matched.

Example:
    >>> # layout = discover_layout(model, block_index=0)
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks, is_prunable_linear, weight_2d
from prunekit.llm.structured.heads_internal import head_indexed, heads_and_width
from prunekit.llm.structured.heads_probe import diagonal_norm_hooks
from prunekit.llm.structured.layout import AttentionLayout, Layout, MLPLayout

_ATTENTION_NAME = re.compile(r"attention|attn", re.IGNORECASE)
PROBE_TOKENS = 8


class _Stop(Exception):
    """Raised after the probed block has run."""


def _out_in(module: nn.Module) -> tuple[int, int]:
    w = weight_2d(module)
    return int(w.shape[0]), int(w.shape[1])


def _attention_module(block: nn.Module, where: str, ran: set[str] | None = None) -> str:
    best: tuple[int, int, str] | None = None
    for name, module in block.named_modules():
        if not name or not _ATTENTION_NAME.search(type(module).__name__):
            continue
        n = sum(1 for p, m in module.named_modules() if is_prunable_linear(m)  # that the probe ran: not
                and (ran is None or f"{name}.{p}" in ran))                      # an idle cross-attention

        if n >= 2 and (best is None or (n, -name.count(".")) < best[:2]):
            best = (n, -name.count("."), name)
    if best is None:
        raise UnsupportedOpError(
            f"{where} ({type(block).__name__}): found no attention module (a submodule whose class name "
            "contains 'Attention' with two or more linear layers); structured pruning cannot match its heads"
        )
    return best[2]


def head_dim_of(attention: nn.Module, config: Any) -> int:
    """Channels per head: the attention module's attribute, else the config's."""
    for attr in ("head_dim", "head_size", "attention_head_size"):
        value = getattr(attention, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    heads = [getattr(attention, a, None) for a in ("num_heads", "num_attention_heads", "n_head", "n_heads")]
    widths = [getattr(attention, a, None) for a in ("split_size", "all_head_size", "embed_dim")]
    heads = [h for h in heads if isinstance(h, int) and h > 0]
    widths = [w for w in widths if isinstance(w, int) and w > 0]
    if heads and widths and widths[0] % heads[0] == 0:  # GPT-1: the module's own width over its head count
        return widths[0] // heads[0]
    value = getattr(config, "head_dim", None)
    if isinstance(value, int) and value > 0:
        return value
    return int(config.hidden_size) // int(config.num_attention_heads)


def probe_block(model: nn.Module, block: nn.Module, tokens: int = PROBE_TOKENS) -> dict[str, Any]:
    """Run the model up to ``block`` with every linear's output made a leaf; return the record."""
    linears = {name: m for name, m in block.named_modules() if name and is_prunable_linear(m)}
    leaves: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    order: list[str] = []
    hidden: list[int] = []
    handles = []

    def make_hook(path: str):
        def hook(_m, args, out):
            if not isinstance(out, torch.Tensor):  # a Linear subclass returning a tuple (Llama 4's router)
                return None
            order.append(path)
            inputs[path] = args[0]
            leaf = out.detach().requires_grad_(True)
            leaves[path] = leaf
            return leaf.clone()  # the forward may write into it in place; the leaf stays intact
        return hook

    def block_pre(_m, args, kwargs):
        h = args[0] if args else kwargs.get("hidden_states")
        hidden.append(int(h.shape[-1]))
        torch.set_grad_enabled(True)  # a model running this block under no_grad (HRM's early cycles)

    def block_post(*_):
        raise _Stop

    for path, module in linears.items():
        handles.append(module.register_forward_hook(make_hook(path)))
    handles.extend(diagonal_norm_hooks(block))  # a norm over all heads must not tie them together
    handles.append(block.register_forward_pre_hook(block_pre, with_kwargs=True))
    handles.append(block.register_forward_hook(block_post))
    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    ids = torch.randint(min(3, vocab - 1), vocab, (1, tokens), generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    try:
        with torch.enable_grad():
            model(input_ids=ids.to(device), use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if not hidden:
        raise UnsupportedOpError(f"{type(block).__name__}: the probe forward never reached this block")
    return {"linears": linears, "leaves": leaves, "inputs": inputs, "order": order, "hidden": hidden[0]}


def _rows_reached(target: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per leaf, a bool per output row: does ``target.sum()`` depend on it."""
    grads = torch.autograd.grad(target.sum(), leaves, retain_graph=True, allow_unused=True)
    out = []
    for leaf, g in zip(leaves, grads):
        if g is None:
            out.append(torch.zeros(leaf.shape[-1], dtype=torch.bool))
        else:
            out.append(g.detach().abs().reshape(-1, g.shape[-1]).sum(0) > 0)
    return out


def _attention_layout(model: nn.Module, block: nn.Module, rec: dict, where: str) -> AttentionLayout:
    attn_path = _attention_module(block, where, set(rec["order"]))
    attention = block.get_submodule(attn_path)
    hidden = rec["hidden"]
    inside = [p for p in rec["order"] if p.startswith(attn_path + ".")]
    o_candidates = [p for p in inside if _out_in(rec["linears"][p])[0] == hidden]
    if not o_candidates:
        raise UnsupportedOpError(f"{where}.{attn_path}: no linear maps the attention output back to "
                                 f"the hidden size {hidden}")
    o = o_candidates[-1]
    qkv = inside[: inside.index(o)]
    o_in = rec["inputs"][o]
    width = int(o_in.shape[-1])
    hd = heads_and_width(attention, model.config, width, head_dim_of(attention, model.config))
    if not qkv or width % hd:
        raise UnsupportedOpError(f"{where}.{attn_path}: could not match query/key/value projections "
                                 f"(found {qkv}) or heads of {hd} channels in {o}'s {width} inputs")
    n_heads = width // hd
    head_rows = [_rows_reached(o_in[..., h * hd:(h + 1) * hd], [rec["leaves"][p] for p in qkv])
                 for h in range(n_heads)]
    indexed = head_indexed(head_rows)  # low-rank bottlenecks (MLA) and routers stay whole
    qkv = [qkv[j] for j in indexed]
    head_rows = [[rows[j] for j in indexed] for rows in head_rows]
    leaves = [rec["leaves"][p] for p in qkv]
    if not qkv:
        raise UnsupportedOpError(f"{where}.{attn_path}: no projection before {o} has rows that feed its heads")
    parent = list(range(n_heads))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for j, _ in enumerate(qkv):
        owner: dict[int, int] = {}
        for h in range(n_heads):
            for r in head_rows[h][j].nonzero().flatten().tolist():
                if r in owner:
                    parent[find(h)] = find(owner[r])
                else:
                    owner[r] = h
        n_rows = leaves[j].shape[-1]
        if len(owner) != n_rows:
            raise UnsupportedOpError(f"{where}.{attn_path}.{qkv[j]}: {n_rows - len(owner)} of {n_rows} output "
                                     "rows feed no head of the output projection; cannot map them to heads")
    groups: dict[int, list[int]] = {}
    for h in range(n_heads):
        groups.setdefault(find(h), []).append(h)
    units = sorted(groups.values())
    per = {len(u) for u in units}
    if len(per) != 1 or any(u != list(range(u[0], u[0] + len(u))) for u in units):
        raise UnsupportedOpError(f"{where}.{attn_path}: heads share projection rows irregularly ({units}); "
                                 "cannot form key/value groups")
    alibi = _takes_alibi(attention) or _takes_alibi(block)
    sets = [[set(head_rows[h][j].nonzero().flatten().tolist()) for j in range(len(qkv))] for h in range(n_heads)]
    if len(units) == 1 and n_heads > 1:  # multi-query: one key/value head shared, query heads are the units
        shared = {p: tuple(sorted(set.intersection(*(sets[h][j] for h in range(n_heads)))))
                  for j, p in enumerate(qkv)}
        rows = {p: tuple(tuple(sorted(sets[h][j] - set(shared[p]))) for h in range(n_heads))
                for j, p in enumerate(qkv)}
        cols = tuple(tuple(range(h * hd, (h + 1) * hd)) for h in range(n_heads))
        return AttentionLayout(attn_path, o, rows, cols, 1, hd, alibi, shared)
    rows = {p: tuple(tuple(sorted(set().union(*(sets[h][j] for h in u)))) for u in units)
            for j, p in enumerate(qkv)}
    cols = tuple(tuple(range(u[0] * hd, (u[-1] + 1) * hd)) for u in units)
    return AttentionLayout(attn_path, o, rows, cols, per.pop(), hd, alibi)


def _takes_alibi(module: nn.Module) -> bool:
    import inspect

    try:
        return bool({"alibi", "position_bias"} & set(inspect.signature(module.forward).parameters))  # MPT
    except (TypeError, ValueError):
        return False


def _mlp_layout(block: nn.Module, rec: dict, attn_path: str, skip: set[str], where: str) -> MLPLayout | None:
    hidden = rec["hidden"]
    outside = [p for p in rec["order"] if not p.startswith(attn_path + ".") and p not in skip]
    ins = [p for p in outside if _out_in(rec["linears"][p])[0] == hidden]
    if not ins:
        return None
    inp = ins[-1]
    size = _out_in(rec["linears"][inp])[1]
    outs = [p for p in outside[: outside.index(inp)]
            if _out_in(rec["linears"][p])[1] == hidden and _out_in(rec["linears"][p])[0] % size == 0]
    if not outs:
        raise UnsupportedOpError(f"{where}: {inp} reads {size} MLP neurons but no linear before it "
                                 f"produces a multiple of {size} outputs from the hidden states")
    rows = _neuron_rows(rec, inp, outs, size)
    if not rows:
        raise UnsupportedOpError(f"{where}: no linear before {inp} feeds its {size} MLP neurons")
    return MLPLayout(inp, rows)


def _neuron_rows(rec: dict, inp: str, outs: list[str], size: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Rows of each neuron in each ``outs`` projection, read from bit-coded gradients."""
    x = rec["inputs"][inp]
    leaves = [rec["leaves"][p] for p in outs]
    weight = torch.randn(size, generator=torch.Generator().manual_seed(1)).abs() + 0.5
    reached = _rows_reached(x * weight, leaves)
    codes = [torch.zeros(leaf.shape[-1], dtype=torch.long) for leaf in leaves]
    for bit in range(max(1, (size - 1).bit_length())):
        cols = torch.tensor([(j >> bit) & 1 for j in range(size)], dtype=x.dtype)
        for code, hit in zip(codes, _rows_reached(x * weight * cols, leaves)):
            code += hit.long() << bit
    result = {}
    for p, code, hit, leaf in zip(outs, codes, reached, leaves):
        if not bool(hit.any()):  # never reaches the neurons (a parallel Mamba mixer's in_proj): not the MLP's
            continue
        copies = leaf.shape[-1] // size
        positional = tuple(tuple(j + c * size for c in range(copies)) for j in range(size))
        if not bool(hit.all()):  # a dead activation hides some rows: the elementwise order holds
            result[p] = positional
            continue
        owners: list[list[int]] = [[] for _ in range(size)]
        for r, j in enumerate(code.tolist()):
            if j < size:
                owners[j].append(r)
        ok = all(len(o) == copies for o in owners)
        result[p] = tuple(tuple(o) for o in owners) if ok else positional
    return result


def discover_layout(model: nn.Module, block_index: int) -> Layout:
    """Probe block ``block_index`` of ``model`` and return its :class:`Layout`."""
    from prunekit.llm.structured.experts import find_experts

    path, blocks = find_blocks(model)
    block = blocks[block_index]
    where = f"{path}.{block_index}"
    rec = probe_block(model, block)
    attention = _attention_layout(model, block, rec, where)
    experts = find_experts(block, rec["hidden"])
    skip = set()
    if experts is not None:  # a linear router, or linears scoring experts, are not MLP neurons
        skip = {p for p in rec["linears"] if p == experts.router or p.startswith(experts.module + ".")
                or _out_in(rec["linears"][p])[0] == experts.n_experts}
    mlp = _mlp_layout(block, rec, attention.module, skip, where)
    return Layout("found", attention, mlp, experts)
