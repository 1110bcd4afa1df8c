"""Mixture-of-experts layers: find them, score experts by router statistics, remove experts.

transformers 5 stores a layer's routed experts as 3-D parameters (Mixtral / Qwen2-MoE /
Qwen3-MoE ``gate_up_proj [E, 2I, H]``, ``down_proj [E, H, I]``) in a module with a
``num_experts`` attribute, next to a router whose ``weight`` is ``[E, H]``, or whose final
linear emits ``E`` logits plus a few trailing non-expert outputs (ZAYA's MLP router:
:mod:`~prunekit.llm.structured.router`). Both are found by shapes and structure, not by
names (:func:`find_experts`).

* :func:`expert_statistics` hooks the router and the experts module during calibration
  forwards and returns, per expert, how often it is in the top-k (``frequency``), the
  routing weight it receives (``mass``) and the norm of the weighted output it adds to
  the residual stream (``contribution``, computed by the experts module's own forward on
  that expert's tokens; for experts modules that take every expert's rows stacked in one
  tensor, as Llama 4's, the norms of each expert's slice of the output:
  :func:`stacked_contribution`). Experts are ranked by ``contribution``, which is zero for
  an expert the router never picks.
* :func:`remove_experts` keeps the other experts' slices of every expert-indexed tensor
  and the router's rows, and updates the ``num_experts`` attributes (the config through
  :func:`~prunekit.llm.structured.surgery.sync_config`).
* :func:`shrink_expert_neurons` reorders each expert's intermediate neurons so the kept
  ones come first (a function-preserving permutation), then cuts the same count from
  every expert, so the 3-D tensors stay 3-D.
Shared experts (ordinary MLPs next to the routed ones) are left to the dense-MLP remover.

Example:
    >>> # stats = expert_statistics(model, batches)        # {block: {"contribution": tensor[E], ...}}
    >>> # remove_experts(model, {1: [3, 5]})               # drop experts 3 and 5 of block 1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from prunekit.errors import ModelError, UnsupportedOpError
from prunekit.llm.structured.groups import expert_neuron_group, experts_group, removal_keep
from prunekit.llm.structured.layout import ExpertsLayout
from prunekit.llm.structured.router import count_attributes, find_router, router_chain, router_extra, router_vectors

STAT_NAMES = ("frequency", "mass", "contribution")


def find_experts(block: nn.Module, hidden: int) -> ExpertsLayout | None:
    """The routed experts of ``block`` (3-D parameters indexed by expert), or None."""
    from prunekit.llm.structured.mixers import inside_attention

    for name, module in block.named_modules():
        n = getattr(module, "num_experts", None)
        params = {k: p for k, p in module.named_parameters(recurse=False) if p.dim() >= 2 and p.shape[0] == n}
        if not isinstance(n, int) or not any(p.dim() == 3 for p in params.values()):
            continue
        if inside_attention(block, name):
            continue  # a mixture of attention heads (JetMoE's query / output experts): not an MLP's experts
        name, params = _with_siblings(block, name, n, params)
        router = find_router(block, name, n, hidden)
        if router is None:
            raise UnsupportedOpError(
                f"{type(block).__name__}.{name}: {n} experts but no router was found in the block (a "
                f"[{n}, {hidden}] weight, or a module declaring {n} experts whose final linear emits "
                f"{n} logits, possibly followed by fewer than {n} extra outputs)")
        inner = [s for p in params.values() if p.dim() == 3 for s in p.shape[1:] if s != hidden]
        if not inner:
            raise UnsupportedOpError(f"{type(block).__name__}.{name}: cannot tell the experts' intermediate size")
        size = min(inner)
        layout: dict[str, tuple[int, int, int]] = {}
        for k, p in params.items():
            dims = [d for d in range(1, p.dim()) if p.shape[d] != hidden and p.shape[d] % size == 0]
            layout[k] = (0, dims[0], p.shape[dims[0]] // size) if dims else (0, -1, 0)
        return ExpertsLayout(name, router, layout, n, size)
    return None


def _with_siblings(block: nn.Module, name: str, n: int, params: dict) -> tuple[str, dict]:
    """Experts split over sibling modules (JetMoE's ``input_linear`` / ``output_linear``, each
    with ``num_experts``) are one experts module: their parent, with dotted parameter names."""
    parent = name.rpartition(".")[0]
    if not parent:
        return name, params
    found = {f"{c}.{k}": p for c, m in block.get_submodule(parent).named_children()
             if getattr(m, "num_experts", None) == n
             for k, p in m.named_parameters(recurse=False) if p.dim() == 3 and p.shape[0] == n}
    if len({k.partition(".")[0] for k in found}) < 2:
        return name, params
    return parent, found


def _router_choice(out: Any, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices [T, k], weights [T, k])`` from a router's output (tuple, or bare logits)."""
    if isinstance(out, tuple):
        ints = [t for t in out if isinstance(t, torch.Tensor) and not t.is_floating_point()]
        floats = [t for t in out if isinstance(t, torch.Tensor) and t.is_floating_point()
                  and ints and t.shape == ints[0].shape]
        if ints and floats:
            return ints[0].reshape(-1, ints[0].shape[-1]), floats[0].reshape(-1, ints[0].shape[-1])
        out = out[0]
    probs = torch.softmax(out.float().reshape(-1, out.shape[-1]), dim=-1)
    weights, index = torch.topk(probs, top_k, dim=-1)
    return index, weights


def stacked_contribution(inputs: Any, out: Any, n: int, tokens: int | None = None) -> torch.Tensor | None:
    """Per-expert output norms of an experts module that runs every expert on its own slice of
    rows (Llama 4: ``[n * tokens, hidden]`` in, already scaled by the router, the same out);
    None when the call is not of that form (with ``tokens``, the router's token count, the
    rows must be ``n * tokens``).

    Each slice is what the expert adds to the residual stream (a token the router did not
    pick comes in as zeros), so the summed row norms are that expert's contribution.

    Example:
        >>> x = torch.cat([torch.ones(3, 4), torch.zeros(3, 4)])  # expert 1 got no tokens
        >>> stacked_contribution(x, 2 * x, 2).tolist()
        [12.0, 0.0]
    """
    out = out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else out
    if not (isinstance(inputs, torch.Tensor) and isinstance(out, torch.Tensor)) or inputs.dim() < 2:
        return None
    rows = inputs.reshape(-1, inputs.shape[-1]).shape[0]
    if rows % n or out.numel() % rows or out.reshape(rows, -1).shape[0] != rows:
        return None
    if tokens is not None and rows != n * tokens:
        return None
    per_expert = out.reshape(n, rows // n, -1).detach().double()
    return per_expert.norm(dim=-1).sum(dim=1).cpu()


def ablated_contribution(module: nn.Module, layout: ExpertsLayout, args: tuple, kwargs: dict, out: Any,
                         picked: Iterable[int]) -> torch.Tensor | None:
    """Per-expert contribution of an experts module whose forward takes only the hidden states
    (JetMoE's MoE: router inside, experts split over ``input_linear`` / ``output_linear``):
    for each expert the router ``picked`` in this call, the module's forward is run again
    with that expert's slice of every expert-indexed parameter zeroed (the expert then adds
    exactly nothing), and the norms of the output change are summed over tokens. The
    parameters are restored; experts not picked add nothing and score 0. None when the
    output is not one tensor.

    Example:
        >>> # ablated_contribution(mlp, layout, (hidden,), {}, mlp(hidden), [0, 3])  # tensor[E]
    """
    out = out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else out
    if not isinstance(out, torch.Tensor):
        return None
    params = [module.get_parameter(k) for k in layout.params]
    result = torch.zeros(layout.n_experts, dtype=torch.float64)
    with torch.no_grad():
        for e in picked:
            saved = [p[e].clone() for p in params]
            try:
                for p in params:
                    p[e].zero_()
                y = module.forward(*args, **kwargs)
            finally:
                for p, v in zip(params, saved):
                    p[e].copy_(v)
            y = y[0] if isinstance(y, tuple) else y
            diff = (out - y).double()
            result[e] = diff.reshape(-1, diff.shape[-1]).norm(dim=-1).sum().cpu()
    return result


def _shapes(args: tuple, kwargs: dict) -> str:
    items = [*args, *kwargs.values()]
    return ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__ for t in items)


def expert_statistics(model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[int, dict[str, torch.Tensor]]:
    """Per MoE block index: ``frequency``, ``mass`` and ``contribution`` per expert."""
    from prunekit.llm.blocks import find_blocks

    _, blocks = find_blocks(model)
    hidden = int(model.config.hidden_size)
    top_k = int(getattr(model.config, "num_experts_per_tok", 1) or 1)
    layouts = {i: lay for i, b in enumerate(blocks) if (lay := find_experts(b, hidden)) is not None}
    stats = {i: {s: torch.zeros(lay.n_experts, dtype=torch.float64) for s in STAT_NAMES}
             for i, lay in layouts.items()}
    handles = []
    routed: dict[int, tuple[int, list[int]]] = {}  # block -> (tokens, experts picked) of the last router call
    pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # block -> the router's choice, not yet counted
    ablating: set[int] = set()
    extras = {i for i, lay in layouts.items() if router_extra(blocks[i], lay.router, lay.n_experts)}

    def flush(_i: int) -> None:
        if _i in pending:
            _count_picks(stats[_i], *pending.pop(_i))

    for i, lay in layouts.items():
        block = blocks[i]
        experts = block.get_submodule(lay.module)

        def on_router(_m, _args, out, _i=i, _n=lay.n_experts):
            if _i in ablating:  # the experts module re-run by ablated_contribution: counted once
                return
            flush(_i)
            index, weights = _router_choice(out, top_k)
            pending[_i] = (index, weights)
            routed[_i] = (index.shape[0], [e for e in index.unique().tolist() if e < _n])

        def on_experts(module, args, kwargs, out, _i=i, _lay=lay):
            _n = _lay.n_experts
            hidden_states, index, weights = (list(args) + [kwargs.get(k) for k in
                                             ("top_k_index", "top_k_weights")])[:3]
            if index is None or weights is None:
                flush(_i)
                tokens, picked = routed.get(_i, (None, list(range(_n))))
                stacked = stacked_contribution(hidden_states, out, _n, tokens)
                if stacked is None:
                    ablating.add(_i)
                    try:
                        stacked = ablated_contribution(module, _lay, args, kwargs, out, picked)
                    finally:
                        ablating.discard(_i)
                if stacked is None:
                    raise UnsupportedOpError(
                        f"{type(module).__name__}: expected (hidden, top_k_index, top_k_weights), one "
                        f"input whose rows are stacked by expert ([{_n} * tokens, hidden]) with an output "
                        f"stacked the same way, or one tensor output; got {_shapes(args, kwargs)}")
                stats[_i]["contribution"] += stacked
                return
            pending.pop(_i, None)  # what the experts receive is the routing that counts (after any balancing
            # bias); a router with outputs past the experts hands a pick of one as expert 0 with weight 0 (ZAYA)
            _count_picks(stats[_i], index, weights, masked=_i in extras)
            h = hidden_states.reshape(-1, hidden_states.shape[-1])
            index, weights = index.reshape(h.shape[0], -1), weights.reshape(h.shape[0], -1)
            for e in [e for e in index.unique().tolist() if 0 <= e < _n]:  # not a non-expert slot
                tok, pos = (index == e).nonzero(as_tuple=True)
                y = module.forward(h[tok], torch.full((len(tok), 1), e, dtype=index.dtype, device=h.device),
                                   weights[tok, pos].unsqueeze(-1))
                stats[_i]["contribution"][e] += y.double().norm(dim=-1).sum()

        handles.append(block.get_submodule(lay.router).register_forward_hook(on_router))
        handles.append(experts.register_forward_hook(on_experts, with_kwargs=True))
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            for batch in batches:
                model(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
    finally:
        for h in handles:
            h.remove()
    for i in list(pending):
        flush(i)
    return stats


def _count_picks(s: dict[str, torch.Tensor], index: torch.Tensor, weights: torch.Tensor,
                 masked: bool = False) -> None:
    """Add one routing decision to ``frequency`` and ``mass``: picks of a router output past
    the experts (a shared or skip slot) add nothing, nor, with ``masked``, picks of weight
    exactly 0 (a non-expert slot the router masked to expert 0 with no weight).

    Example:
        >>> s = {"frequency": torch.zeros(3, dtype=torch.float64), "mass": torch.zeros(3, dtype=torch.float64)}
        >>> _count_picks(s, torch.tensor([[0, 3], [0, 1]]), torch.tensor([[0.5, 0.5], [0.0, 1.0]]), masked=True)
        >>> s["frequency"].tolist(), s["mass"].tolist()
        ([1.0, 1.0, 0.0], [0.5, 1.0, 0.0])
    """
    n = len(s["frequency"])
    index, weights = index.reshape(-1), weights.detach().reshape(-1).double()
    real = (index >= 0) & (index < n) & ((weights != 0) | (not masked))
    s["frequency"] += torch.bincount(index[real], minlength=n).double().cpu()
    s["mass"].index_add_(0, index[real].cpu(), weights[real].cpu())


def _set_counts(block: nn.Module, layout: ExpertsLayout, n: int, extra: int) -> None:
    """Set the count attributes of the experts module, its holders and the routing chain
    (:func:`~prunekit.llm.structured.router.count_attributes`) for ``n`` experts (the
    router emitting ``extra`` outputs past them)."""
    parent = layout.module.rpartition(".")[0]
    parts = {k.rpartition(".")[0] for k in layout.params if "." in k}  # split experts' holders
    gate = layout.router.rpartition(".")[0]  # a gating module around the router's linear (JetMoE's)
    chain = set(router_chain(block, layout.router, layout.module))  # a router that is a chain (ZAYA's MLP)
    for path in {layout.module, layout.router, parent, gate} | chain | {f"{layout.module}.{q}" for q in parts}:
        module = block.get_submodule(path) if path else block
        for name, value in count_attributes(module, layout.n_experts, n, extra, path in chain).items():
            setattr(module, name, value)
        if isinstance(getattr(module, "top_k", None), int) and module.top_k > n:
            raise ModelError(f"{path}: keeping {n} experts leaves fewer than top_k={module.top_k}")


def expert_members(block_path: str, block: nn.Module, layout: ExpertsLayout) -> dict[str, int]:
    """Every tensor indexed by expert in one block: ``{name in the model: expert dim}``."""
    out = {f"{block_path}.{layout.module}.{k}": 0 for k in layout.params}
    parent = layout.module.rpartition(".")[0]
    from prunekit.llm.blocks import is_prunable_linear

    owners = {layout.router, parent} | {f"{parent}.{name}" for name, m in block.get_submodule(parent).named_modules()
                                        if name and not is_prunable_linear(m)} if parent else {layout.router}
    for full in owners:  # the router's rows and per-expert vectors near it (score-correction biases)
        if full != layout.router and (full == layout.module or full.startswith(layout.module + ".")):
            continue
        module = block.get_submodule(full)
        for k, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            dims = [d for d in range(t.dim()) if t.shape[d] == layout.n_experts] if t is not None else []
            if 1 <= t.dim() <= 2 and dims:  # [E], [E, H] or a grouped [groups, E] (Ernie 4.5)
                out[f"{block_path}.{full}.{k}"] = dims[0]
            elif full == layout.router and k == "weight" and t.dim() == 2 and t.shape[0] > layout.n_experts:
                out[f"{block_path}.{full}.{k}"] = 0  # rows past n_experts are not experts (shared, skip): kept
    for vector in router_vectors(block, layout.router, layout.module, layout.n_experts):
        out[f"{block_path}.{vector}"] = 0  # [n + extra] beside the router (ZAYA's balancing biases)
    return out


def remove_experts(model: nn.Module, remove: Mapping[int, Iterable[int]], *, sync: bool = True) -> None:
    """Remove whole experts in place: ``{block_index: [expert, ...]}``."""
    from prunekit.llm.blocks import find_blocks
    from prunekit.llm.structured.shapes import sync_config
    from prunekit.llm.structured.surgery import check_indices
    from prunekit.surgery.apply import apply_keep

    path, blocks = find_blocks(model)
    hidden = int(model.config.hidden_size)
    removals = []
    counts = []
    for layer, experts in remove.items():
        block = blocks[int(layer)] if 0 <= int(layer) < len(blocks) else None
        layout = find_experts(block, hidden) if block is not None else None
        if layout is None:
            raise ModelError(f"block {layer} of {path} has no routed experts")
        drop = check_indices("experts", int(layer), experts, layout.n_experts)
        if drop:
            removals.append((experts_group(expert_members(f"{path}.{layer}", block, layout), layout.n_experts), drop))
            extra = router_extra(block, layout.router, layout.n_experts)
            counts.append((block, layout, layout.n_experts - len(drop), extra))
    for block, layout, n, extra in counts:
        _set_counts(block, layout, layout.n_experts, extra)  # validates top_k before anything changes
        top_k = getattr(block.get_submodule(layout.router), "top_k", 0)
        if isinstance(top_k, int) and top_k > n:
            raise ModelError(f"keeping {n} experts leaves fewer than top_k={top_k}")
    apply_keep(model, removal_keep(model, removals))
    for block, layout, n, extra in counts:
        _set_counts(block, layout, n, extra)
    if sync:
        sync_config(model)


def shrink_expert_neurons(model: nn.Module, keep_order: Mapping[int, torch.Tensor], *, sync: bool = True) -> None:
    """Keep, per block, ``keep_order[block]`` ([E, k]: kept neuron indices of each expert)."""
    from prunekit.llm.blocks import find_blocks
    from prunekit.llm.structured.shapes import sync_config
    from prunekit.surgery.apply import apply_keep

    path, blocks = find_blocks(model)
    hidden = int(model.config.hidden_size)
    removals = []
    for layer, kept in keep_order.items():
        block = blocks[int(layer)]
        layout = find_experts(block, hidden)
        if layout is None:
            raise ModelError(f"block {layer} of {path} has no routed experts")
        experts = block.get_submodule(layout.module)
        k = kept.shape[1]
        for name, (_, dim, copies) in layout.params.items():
            if dim < 0:
                continue
            p = experts.get_parameter(name)
            order = [torch.cat([kept[e], _rest(kept[e], layout.size)]) for e in range(layout.n_experts)]
            rows = torch.stack([torch.cat([o + c * layout.size for c in range(copies)]) for o in order])
            with torch.no_grad():  # a per-expert permutation: the function is unchanged
                index = rows.reshape(rows.shape[0], *([1] * (dim - 1)), rows.shape[1],
                                     *([1] * (p.dim() - dim - 1))).expand_as(p)
                p.copy_(torch.gather(p.detach().clone(), dim, index))
        removals.append((expert_neuron_group(f"{path}.{layer}", layout), torch.arange(k, layout.size)))
        if hasattr(experts, "intermediate_dim"):
            experts.intermediate_dim = k
    apply_keep(model, removal_keep(model, removals))
    if sync:
        sync_config(model)


def _rest(kept: torch.Tensor, size: int) -> torch.Tensor:
    chosen = set(kept.tolist())
    return torch.tensor([j for j in range(size) if j not in chosen], dtype=torch.long)
