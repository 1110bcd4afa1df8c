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

A block without an attention module with heads (an SSM or recurrent mixer) gets
``attention=None`` and its MLP is found by :mod:`.mixers`. An attention module whose heads
do not fit as linears but whose query / output projections are routed experts (3-D
parameters: JetMoE's mixture of attention heads) is matched by :mod:`.heads_routed`; one
that fits neither gets ``attention=None`` with ``attention_error`` naming the
module and what was not matched: removing its heads raises
:class:`~prunekit.errors.UnsupportedOpError` with that reason, while its MLP, experts and
the whole block can still be removed.

Example:
    >>> # layout = discover_layout(model, block_index=0)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import is_prunable_linear, weight_2d
from prunekit.llm.layers import block_prefix, find_layers, hook_layer
from prunekit.llm.structured.heads_internal import head_indexed, heads_and_width
from prunekit.llm.structured.heads_partition import owner_partitions
from prunekit.llm.structured.heads_probe import diagonal_norm_hooks, nonzero_parameters
from prunekit.llm.structured.heads_routed import expert_modules, routed_layout
from prunekit.llm.structured.layout import AttentionLayout, Layout
from prunekit.llm.structured.mixers import attention_path, attention_paths, declares_head_size, mlp_layout, rows_reached

PROBE_TOKENS = 8


class _Stop(Exception):
    """Raised after the probed block has run."""


def _out_in(module: nn.Module) -> tuple[int, int]:
    w = weight_2d(module)
    return int(w.shape[0]), int(w.shape[1])


def _attention_module(block: nn.Module, where: str, ran: set[str] | None = None) -> str:
    path = attention_path(block, ran)
    if path is None:
        raise UnsupportedOpError(
            f"{where} ({type(block).__name__}): found no attention module (a submodule whose class name "
            "contains 'Attention' with two or more linear layers); structured pruning cannot match its heads"
        )
    return path


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


def probe_block(model: nn.Module, block: nn.Module, tokens: int = PROBE_TOKENS,
                through: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the model up to ``block`` with every linear's output made a leaf; return the record.

    The linears in ``through`` keep their output in the graph (gradients pass through them).
    """
    linears = {name: m for name, m in block.named_modules() if name and is_prunable_linear(m)
               and name not in through}
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
            rows = int(weight_2d(linears[path]).shape[0])
            shape = out.shape
            if out.shape[-1] != rows and out.dim() >= 2 and out.shape[-2] * out.shape[-1] == rows:
                out = out.flatten(-2)  # a grouped linear returning [..., groups, rows per group] (DeepSeek-V4)
            leaf = out.detach().requires_grad_(True)  # the last dim is the weight's output rows
            leaves[path] = leaf
            return leaf.clone().reshape(shape)  # the forward may write into it in place; the leaf stays intact
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
    handles.extend(hook_layer(block, block_pre, block_post))  # (a layer in parallel lists: its entries)
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


def _attention_layout(model: nn.Module, block: nn.Module, rec: dict, where: str,
                      attn_path: str | None = None) -> AttentionLayout:
    attn_path = attn_path or _attention_module(block, where, set(rec["order"]))
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
    head_rows = [rows_reached(o_in[..., h * hd:(h + 1) * hd], [rec["leaves"][p] for p in qkv])
                 for h in range(n_heads)]
    head_rows, through = through_grouped(block, rec, qkv, head_rows)
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
        return AttentionLayout(attn_path, o, rows, cols, 1, hd, alibi, shared, through=through)
    rows = {p: tuple(tuple(sorted(set().union(*(sets[h][j] for h in u)))) for u in units)
            for j, p in enumerate(qkv)}
    uneven = [f"{p} {sorted({len(r) for r in rs})}" for p, rs in rows.items() if len({len(r) for r in rs}) > 1]
    parts = owner_partitions(rows) if uneven else None  # values from one of parallel projections (ZAYA)
    if uneven and parts is None:
        raise UnsupportedOpError(f"{where}.{attn_path}: the key/value groups own different numbers of rows of "
                                 f"{', '.join(uneven)}; they cannot be removed as one group")
    cols = tuple(tuple(range(u[0] * hd, (u[-1] + 1) * hd)) for u in units)
    return AttentionLayout(attn_path, o, rows, cols, per.pop(), hd, alibi, through=through,
                           partitions=parts or {})


def through_grouped(block: nn.Module, rec: dict, qkv: list[str],
                    head_rows: list[list[torch.Tensor]]) -> tuple[list[list[torch.Tensor]], tuple[str, ...]]:
    """Follow the heads back through a projection that keeps them apart (a grouped linear).

    DeepSeek-V4's output is a pair: ``o_a_proj`` (one group of low-rank rows per head
    group) then ``o_b_proj``; the output projection's columns reach ``o_a_proj``'s rows,
    whose *input* holds the attention output. For each projection whose rows the heads
    reach disjointly and whose input depends on other projections, the input entries each
    head's rows read (the module's own forward, differentiated) are traced on to the
    q/k/v rows. A plain linear reads all its input for every row, so the heads meet there
    and stay one unit, as before. Returns the rows and the projections passed through.
    """
    leaves = [rec["leaves"][p] for p in qkv]
    through = []
    n = len(head_rows)
    for j, p in enumerate(qkv):
        hits = torch.stack([head_rows[h][j] for h in range(n)])
        x = rec["inputs"].get(p)
        if n < 2 or not bool(hits.any()) or bool((hits.sum(0) > 1).any()) or x is None or not x.requires_grad:
            continue
        if not any(bool(r.any()) for r in rows_reached(x, leaves)):
            continue  # reads the block input, not another projection
        xl = x.detach().requires_grad_(True)
        with torch.enable_grad():
            y = block.get_submodule(p)(xl)
        y = y.reshape(*y.shape[: y.dim() - (2 if y.shape[-1] != hits.shape[1] else 1)], hits.shape[1])
        reads = {h: torch.autograd.grad(y[..., hits[h]].sum(), xl, retain_graph=True)[0] != 0
                 for h in range(n) if bool(hits[h].any())}
        if bool((torch.stack(list(reads.values())).sum(0) > 1).any()):
            continue  # every row reads the whole input (a plain linear, MLA's q_b_proj): the heads meet here
        through.append(p)
        for h, mask in reads.items():
            for k, extra in enumerate(rows_reached(x * mask.to(x.dtype), leaves)):
                if k != j:
                    head_rows[h][k] = head_rows[h][k] | extra
    return head_rows, tuple(through)


def _why_unmatched(block: nn.Module, attn_path: str, where: str) -> str | None:
    """A plainer reason when the attention's projections are routed experts (3-D parameters)."""
    experts = [f"{m}.{k}".lstrip(".") for m, mod in block.get_submodule(attn_path).named_modules()
               if not isinstance(mod, nn.modules.conv._ConvNd)  # a convolution's 3-D kernel holds no experts
               for k, p in mod.named_parameters(recurse=False) if p.dim() == 3]
    if not experts:
        return None
    return (f"{where}.{attn_path}: a mixture of attention heads (its query / output projections are routed "
            f"experts, 3-D parameters {', '.join(experts)}), not linear layers whose rows and columns hold heads")


def _takes_alibi(module: nn.Module) -> bool:
    import inspect

    try:
        return bool({"alibi", "position_bias"} & set(inspect.signature(module.forward).parameters))  # MPT
    except (TypeError, ValueError):
        return False


def discover_layout(model: nn.Module, block_index: int) -> Layout:
    """Probe block ``block_index`` of ``model`` and return its :class:`Layout`."""
    path, blocks = find_layers(model)
    block = blocks[block_index]
    where = block_prefix(path, blocks, block_index)
    with nonzero_parameters(block):  # an all-zero scale (ZAYA's key temperature) must not hide the heads
        return _discover(model, block, where)


def _discover(model: nn.Module, block: nn.Module, where: str) -> Layout:
    """:func:`discover_layout` of one block, with its all-zero parameters made live."""
    from prunekit.llm.structured.experts import find_experts

    rec = probe_block(model, block)
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    width = getattr(text, "hidden_size", None)
    if isinstance(width, int) and 0 < width < rec["hidden"] and rec["hidden"] % width == 0:
        rec["hidden"] = width  # hyper-connections: the block carries several streams of the hidden state
    paths = attention_paths(block, set(rec["order"]))  # none: an SSM / recurrent mixer, left as it is (mixers.py)
    attn_path = paths[0] if paths else None
    if attn_path is not None and not declares_head_size(block.get_submodule(attn_path), model.config):
        attn_path, paths = None, []
    attention, error, more = None, None, ()
    if attn_path is not None:
        try:
            attention = _attention_layout(model, block, rec, where, attn_path)
        except UnsupportedOpError as e:  # heads unmatched: the MLP, experts and the whole block still are
            error = _why_unmatched(block, attn_path, where) or str(e)
            if expert_modules(block.get_submodule(attn_path)):  # a mixture of attention heads
                try:
                    hd = head_dim_of(block.get_submodule(attn_path), model.config)
                    attention, error = routed_layout(model, block, attn_path, where, hd), None
                except UnsupportedOpError as e2:
                    error = f"{error}; {e2}"
    if attention is not None and len(paths) > 1:  # the other attentions of a module list: each its own heads
        try:
            more = tuple(_attention_layout(model, block, rec, where, p) for p in paths[1:])
        except UnsupportedOpError as e:  # one attention's heads unmatched: none are removed (named in the error)
            attention, error = None, str(e)
    experts = find_experts(block, rec["hidden"])
    skip = set()
    if experts is not None:  # a linear router, or linears scoring experts, are not MLP neurons
        skip = {p for p in rec["linears"] if p == experts.router or p.startswith(experts.module + ".")
                or _out_in(rec["linears"][p])[0] == experts.n_experts}
    mlp = mlp_layout(rec, block, (*(paths or [""]), experts.module if experts else ""), skip)
    return Layout("found", attention, mlp, experts, attention_error=error, more_attention=more)
