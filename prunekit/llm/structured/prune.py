"""Score-and-remove structured pruning of a transformer: heads, MLP neurons, experts, blocks.

``structured_prune(model, batches, StructuredConfig(heads=0.25, mlp=0.25, experts=0.25, layers=1))``
scores every unit on calibration batches (dense forward passes), then removes the
lowest-scoring ones with :mod:`prunekit.llm.structured.surgery` and
:mod:`prunekit.llm.structured.experts`. Where the units are comes from each block's
:class:`~prunekit.llm.structured.layout.Layout` (name table, else a probe of the block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError, UnsupportedOpError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.hooks import collect_input_stats
from prunekit.llm.layers import block_prefix, find_layers, hook_layer
from prunekit.llm.sequential import block_output
from prunekit.llm.structured.applicability import not_applicable
from prunekit.llm.structured.experts import expert_members, expert_statistics, remove_experts, shrink_expert_neurons
from prunekit.llm.structured.groups import experts_group, head_group, mlp_group
from prunekit.llm.structured.heads_check import TiedWidthError
from prunekit.llm.structured.importance import block_influence, expert_neuron_scores
from prunekit.llm.structured.layer_fields import DepthNotBuildableError, removable_layers
from prunekit.llm.structured.per_layer import global_access
from prunekit.llm.structured.shapes import sync_config
from prunekit.llm.structured.surgery import block_layouts, prune_heads, prune_mlp_neurons, remove_layers
from prunekit.structured.activation import activation_scores
from prunekit.structured.allocate import balanced_lowest, global_lowest, lowest, removal_count
from prunekit.structured.router import router_scores

EXPERT_WIDTH_MULTIPLE = 8


@dataclass(frozen=True)
class StructuredConfig(ConfigBase):
    """How much structure to remove.

    Attributes:
        heads: fraction of attention units (KV groups with GQA, else heads) removed.
        mlp: fraction of MLP intermediate neurons removed (dense MLPs, shared experts and
            every routed expert; an expert keeps a multiple of 8 neurons, as the grouped
            expert kernels of transformers need aligned rows).
        experts: fraction of routed experts removed in every mixture-of-experts layer,
            ranked by router statistics (the weighted output each expert adds on the
            calibration text); shared experts are kept.
        layers: number of whole blocks removed.
        scope: ``"layer"`` (the same fraction in every block: shapes stay uniform, so
            plain ``from_pretrained`` reloads where the config can say it) or ``"global"``
            (ranked across blocks: non-uniform widths, reload with ``load_pruned``).

    Example:
        >>> StructuredConfig(heads=0.25, experts=0.25).scope
        'layer'
    """

    heads: float = 0.0
    mlp: float = 0.0
    layers: int = 0
    scope: str = "layer"
    experts: float = 0.0

    def __post_init__(self) -> None:
        check_fraction("heads", self.heads)
        check_fraction("mlp", self.mlp)
        check_fraction("experts", self.experts)
        check_positive_int("layers", self.layers, allow_zero=True)
        check_choice("scope", self.scope, ("layer", "global"))


def _run(model: nn.Module, batches: list[dict[str, Any]]) -> None:
    device = next(model.parameters()).device
    for batch in batches:
        model(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})


def collect_structured_scores(model: nn.Module, batches: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Head-unit, neuron and block scores of every block (one dense pass over ``batches``).

    ``heads`` and ``neurons`` are keyed by block index and hold only the blocks that have
    attention heads / a dense MLP (``heads``: the block's first attention); ``more_heads[i][k]``
    scores attention ``k`` of a block with several (:attr:`Layout.attentions`); ``blocks``
    has one score per block.
    """
    path, blocks = find_layers(model)
    layouts = block_layouts(model)
    units = {("heads", i, k): head_group(block_prefix(path, blocks, i), blocks[i], att)
             for i, lay in layouts.items() for k, att in enumerate(lay.attentions)}
    units.update({("neurons", i, 0): mlp_group(block_prefix(path, blocks, i), blocks[i], lay.mlp)
                  for i, lay in layouts.items() if lay.mlp is not None})
    watched = {t.rpartition(".")[0]: model.get_submodule(t.rpartition(".")[0])
               for g in units.values() for t, _ in g.consumers}
    influence = [torch.zeros(2) for _ in blocks]
    handles = []
    stats: dict[str, Any] = {}
    if batches:
        for i, b in enumerate(blocks):  # (a layer in parallel lists: in at its first entry, out at its last)
            entered: list[torch.Tensor] = []

            def pre(_m, args, kwargs, _entered=entered):
                _entered[:] = [args[0] if args else kwargs["hidden_states"]]

            def post(_m, _args, out, _i=i, _entered=entered):
                influence[_i] += block_influence(_entered[0], block_output(out))
            handles.extend(hook_layer(b, pre, post))
        try:
            with collect_input_stats(watched, gram=False) as stats, torch.no_grad():
                _run(model, batches)
        finally:
            for h in handles:
                h.remove()
    # the one engine's "activation" importance over the LLM groups (Wanda's column score summed per unit)
    scored = activation_scores(model, list(units.values()), {k: v.sq_norm for k, v in stats.items()})
    heads: dict[int, torch.Tensor] = {}
    neurons: dict[int, torch.Tensor] = {}
    more: dict[int, dict[int, torch.Tensor]] = {}
    for (kind, i, k), s in zip(units, scored):
        if k:  # a block's further attention (Layout.more_attention)
            more.setdefault(i, {})[k] = s.float()
        else:
            (heads if kind == "heads" else neurons)[i] = s.float()
    blocks_score = [influence[i][0] / max(influence[i][1].item(), 1.0) for i in layouts]
    return {"heads": heads, "neurons": neurons, "blocks": blocks_score, "layouts": layouts, "more_heads": more}


def _lowest(scores: list[torch.Tensor], fraction: float, scope: str) -> dict[int, list[int]]:
    """Per block the removed units (lowest first): the structured engine's allocation
    (:mod:`prunekit.structured.allocate`). ``"layer"``: ``fraction`` of each block, rounded half
    up (0.25 of 2 KV groups is 1); ``"global"``: the lowest overall, scores divided by their
    block's sum, never a block's last unit."""
    if fraction == 0:
        return {}
    if scope == "layer":
        return {i: lowest(s, removal_count(s.numel(), fraction, "half_up")) for i, s in enumerate(scores)}
    n_remove = removal_count(sum(s.numel() for s in scores), fraction, "half_even", min_keep=0)
    return dict(enumerate(global_lowest(scores, n_remove, "sum", refill=False)))


def _by_block(keys: list[int], chosen: dict[int, list[int]]) -> dict[int, list[int]]:
    return {keys[i]: v for i, v in chosen.items()}


def _same_heads_where_shared(model: nn.Module, chosen: dict[int, list[int]], scores: dict[int, torch.Tensor],
                             fraction: float, layouts: dict) -> dict[int, list[int]]:
    """With a per-head tensor shared by every block (:mod:`.heads_shared`), the same units go
    everywhere: the lowest by score summed over the blocks."""
    from prunekit.llm.structured.heads_shared import common_head_count, shared_head_tensors

    n_heads = common_head_count(layouts)
    if not fraction or not scores or not n_heads or not shared_head_tensors(model, find_blocks(model)[0], n_heads):
        return chosen
    total = sum(s / s.sum().clamp_min(1e-12) for s in scores.values())
    same = sorted(_lowest([total], fraction, "layer")[0])
    return {i: list(same) for i in scores}


def _every_attention(chosen: dict[int, list[int]], more: dict[int, dict[int, torch.Tensor]]
                     ) -> dict[int | tuple[int, int], list[int]]:
    """The head plan with a block's further attentions added (keys ``(block, k)``): each loses
    as many units as its first attention (so one config head count still builds them all),
    its own lowest-scored ones.

    Example:
        >>> _every_attention({0: [2], 1: [0]}, {0: {1: torch.tensor([3.0, 1.0, 2.0])}})
        {1: [0], (0, 0): [2], (0, 1): [1]}
    """
    out: dict[int | tuple[int, int], list[int]] = {i: v for i, v in chosen.items() if i not in more}
    for i, extra in more.items():
        if i not in chosen:
            continue
        out[(i, 0)] = list(chosen[i])
        for k, s in sorted(extra.items()):
            out[(i, k)] = sorted(torch.argsort(s)[: len(chosen[i])].tolist())
    return out


def _balanced_parts(chosen: dict[Any, list[int]], scores: dict[str, Any], layouts: dict,
                    same: bool = False) -> dict[Any, list[int]]:
    """Each attention whose units are split between parallel projections (ZAYA's value
    halves, :attr:`AttentionLayout.partitions`) loses as many units from every part, each
    part its lowest-scored: the count asked of the block is spread by
    :func:`~prunekit.llm.structured.heads_partition.balanced_removal` (half up per part, at
    least one when any is asked, never a whole part). Other attentions keep their choice.
    With ``same`` (a per-head tensor shared by every block) the scores summed over the
    blocks pick, so every block still loses the same units."""
    from prunekit.llm.structured.heads_partition import balanced_removal

    out = dict(chosen)
    total = sum(s / s.sum().clamp_min(1e-12) for s in scores["heads"].values()) if same else None
    for key, units in chosen.items():
        i, k = key if isinstance(key, tuple) else (key, 0)
        atts = layouts[i].attentions
        if not units or k >= len(atts) or not atts[k].partitions:
            continue
        s = total if total is not None and k == 0 else scores["heads"][i] if k == 0 else scores["more_heads"][i][k]
        out[key] = balanced_removal(s, len(units), atts[k].partitions, f"block {i}: {atts[k].module}")
    return out


def _experts_plan(model: nn.Module, batches: list[dict[str, Any]] | None, config: StructuredConfig,
                  layouts: dict) -> tuple[dict[int, list[int]], dict[int, dict[str, list[float]]]]:
    moe = [i for i, lay in layouts.items() if lay.experts is not None]
    if not moe or config.experts == 0:
        return {}, {}
    if not batches:
        raise ConfigError("experts: removing experts needs calibration batches (router statistics)")
    stats = expert_statistics(model, batches)
    path, blocks = find_blocks(model)
    units = [experts_group(expert_members(f"{path}.{i}", blocks[i], layouts[i].experts), layouts[i].experts.n_experts)
             for i in moe]
    routers = {f"{path}.{i}.{layouts[i].experts.router}.weight": stats[i] for i in moe}
    scores = dict(zip(moe, (s.float() for s in router_scores(units, routers))))  # the one engine's "router"
    chosen = _lowest([scores[i] for i in moe], config.experts, config.scope)
    plan = {i: sorted(v) for i, v in _by_block(moe, chosen).items()}
    groups = expert_groups(model)
    if groups > 1:
        plan = {i: _grouped(i, v, scores[i], groups) for i, v in plan.items()}
    return plan, {i: {k: v.tolist() for k, v in stats[i].items()} for i in moe}


def expert_groups(model: nn.Module) -> int:
    """How many consecutive groups a group-limited router splits the experts into (config
    ``n_group``, also under an alias through the config's ``attribute_map``); 1 for none."""
    config = model.config
    for name in ("n_group", "num_expert_group"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    return 1


def _grouped(block: int, chosen: list[int], scores: torch.Tensor, groups: int) -> list[int]:
    """``chosen``'s count of experts, taken evenly from the router's groups (each its lowest)."""
    if not chosen:
        return chosen
    if scores.numel() % groups:
        raise UnsupportedOpError(f"experts: block {block} has {scores.numel()} experts, not divisible by "
                                 f"the router's n_group={groups}")
    size = scores.numel() // groups
    drop = balanced_lowest(scores, len(chosen), groups)
    if not drop or len(drop) // groups >= size:
        raise UnsupportedOpError(
            f"experts: block {block}'s router picks experts inside n_group={groups} groups of {size}; removing "
            f"{len(chosen)} of {scores.numel()} cannot take the same number from every group and keep each "
            f"group non-empty; ask for a multiple of {groups} experts per layer "
            f"(experts >= {groups / scores.numel():g}) and fewer than {scores.numel()}")
    return drop


def _expert_neurons_plan(model: nn.Module, fraction: float, layouts: dict) -> dict[int, torch.Tensor]:
    """Per MoE block, the kept neurons of each expert ([experts, kept]), weight-scored."""
    _, blocks = find_layers(model)
    out: dict[int, torch.Tensor] = {}
    if fraction == 0 or not any(lay.experts for lay in layouts.values()):
        return out
    for i, lay in block_layouts(model).items():
        ex = lay.experts
        if ex is None:
            continue
        module = blocks[i].get_submodule(ex.module)
        scores = expert_neuron_scores({k: module.get_parameter(k) for k in ex.params}, ex.params, ex.size)
        k = max(1, ex.size - int(round(fraction * ex.size)))
        if k >= EXPERT_WIDTH_MULTIPLE:  # grouped-GEMM expert kernels need 16-byte aligned rows
            k -= k % EXPERT_WIDTH_MULTIPLE
        out[i] = torch.sort(torch.argsort(scores, dim=1, descending=True)[:, :k], dim=1).values
    return out


def structured_prune(
    model: nn.Module, batches: list[dict[str, Any]] | None, config: StructuredConfig
) -> dict[str, Any]:
    """Remove the lowest-scoring heads, neurons, experts and blocks in place; return the plan.

    Returns:
        ``{"heads": {block: [units]}, "mlp": {block: [neurons]}, "experts": {block: [experts]},
        (a block with several attentions: ``{(block, k): [units]}`` for each attention ``k``)
        "expert_stats": {block: {...}}, "experts_before": {block: n}, "layers": [blocks],
        "not_applicable": {kind: reason}}`` (indices refer to the model as it was before the
        call). A requested kind the model has nothing of (heads in a pure Mamba model, experts
        in a dense one) is not an error: it is listed in ``not_applicable`` and the other
        kinds are still removed (:func:`~prunekit.llm.structured.applicability.not_applicable`).
        Layers are the lowest-influence blocks among those whose removal the config can
        express (:func:`~prunekit.llm.structured.layer_fields.removable_layers`); when the
        model's class builds no model with that many fewer layers (a 2-layer OLMo-Hybrid
        needs one layer of each kind), ``not_applicable["layers"]`` gives the class's reason.
        A heterogeneous config (``per_layer_config``) is read by its global values meanwhile
        (:func:`~prunekit.llm.structured.per_layer.global_access`).
    """
    with global_access(model.config):
        return _structured_prune(model, batches, config)


def _structured_prune(model: nn.Module, batches: list[dict[str, Any]] | None,
                      config: StructuredConfig) -> dict[str, Any]:
    """:func:`structured_prune` itself."""
    scores = collect_structured_scores(model, batches)
    layouts = scores["layouts"]
    unmatched = [lay.attention_error for lay in layouts.values() if lay.attention is None and lay.attention_error]
    if config.heads and unmatched:  # the model has heads this cannot remove: an error, not "not applicable"
        raise UnsupportedOpError(f"heads: {unmatched[0]}; its heads cannot be removed (mlp, layers and "
                                 "experts still can)")
    dense, attn = sorted(scores["neurons"]), sorted(scores["heads"])
    plan: dict[str, Any] = {
        "heads": _by_block(attn, _lowest([scores["heads"][i] for i in attn], config.heads, config.scope)),
        "mlp": _by_block(dense, _lowest([scores["neurons"][i] for i in dense], config.mlp, config.scope)),
        "layers": [],
        "experts_before": {i: lay.experts.n_experts for i, lay in layouts.items() if lay.experts},
        "not_applicable": not_applicable(model, config, layouts),
    }
    per_block = plan["heads"]
    plan["heads"] = _same_heads_where_shared(model, plan["heads"], scores["heads"], config.heads, layouts)
    plan["heads"] = _balanced_parts(_every_attention(plan["heads"], scores["more_heads"]), scores, layouts,
                                    same=plan["heads"] is not per_block)
    plan["experts"], plan["expert_stats"] = _experts_plan(model, batches, config, layouts)
    if config.layers:
        if not batches:
            raise ConfigError("removing whole layers needs calibration batches (block influence)")
        order = torch.argsort(torch.stack(scores["blocks"])).tolist()
        try:
            plan["layers"] = removable_layers(model, order, config.layers)
        except DepthNotBuildableError as e:  # the class has no model that much shallower
            plan["not_applicable"]["layers"] = e.reason
    if any(plan["heads"].values()):
        try:
            prune_heads(model, plan["heads"], sync=False)
        except TiedWidthError as e:  # the forward ties heads to the hidden size: nothing was removed
            plan["heads"] = {}
            plan["not_applicable"]["heads"] = e.reason
    if any(plan["mlp"].values()):
        prune_mlp_neurons(model, plan["mlp"], sync=False)
    if any(plan["experts"].values()):
        remove_experts(model, plan["experts"], sync=False)
    neurons = _expert_neurons_plan(model, config.mlp, layouts)
    if neurons:
        shrink_expert_neurons(model, neurons, sync=False)
    plan["experts_after"] = _expert_counts(model, plan["experts_before"])
    if plan["layers"]:
        remove_layers(model, plan["layers"], sync=False)
    sync_config(model)
    return plan


def _expert_counts(model: nn.Module, before: dict[int, int]) -> dict[int, int]:
    """Routed experts now in each block of ``before``: read from the experts' 3-D parameters
    (:func:`~prunekit.llm.structured.experts.find_experts`, no probe forward; a whole layout
    discovery only where that finds none)."""
    from prunekit.llm.structured.experts import find_experts

    if not before:
        return {}
    _, blocks = find_layers(model)
    hidden = int(model.config.hidden_size)
    found = {i: find_experts(blocks[i], hidden) for i in before}
    missing = [i for i, lay in found.items() if lay is None]
    slow = block_layouts(model, missing) if missing else {}
    return {i: lay.n_experts if lay is not None else slow[i].experts.n_experts for i, lay in found.items()
            if lay is not None or slow[i].experts is not None}
