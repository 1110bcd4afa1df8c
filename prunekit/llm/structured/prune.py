"""Score-and-remove structured pruning of a transformer: heads, MLP neurons, blocks.

``structured_prune(model, batches, StructuredConfig(heads=0.25, mlp=0.25, layers=2))``
scores every unit on calibration batches (one dense forward pass), then removes the
lowest-scoring ones with :mod:`prunekit.llm.structured.surgery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.llm.blocks import find_blocks, weight_2d
from prunekit.llm.hooks import collect_input_stats
from prunekit.llm.sequential import block_output
from prunekit.llm.structured.families import block_layout, head_counts
from prunekit.llm.structured.importance import block_influence, column_scores, group_scores
from prunekit.llm.structured.surgery import prune_heads, prune_mlp_neurons, remove_layers


@dataclass(frozen=True)
class StructuredConfig(ConfigBase):
    """How much structure to remove.

    Attributes:
        heads: fraction of attention units (KV groups with GQA, else heads) removed.
        mlp: fraction of MLP intermediate neurons removed.
        layers: number of whole blocks removed.
        scope: ``"layer"`` (the same fraction in every block: shapes stay uniform, so
            plain ``from_pretrained`` reloads Llama-family models) or ``"global"``
            (ranked across blocks: non-uniform widths, reload with ``load_pruned``).

    Example:
        >>> StructuredConfig(heads=0.25, mlp=0.5).scope
        'layer'
    """

    heads: float = 0.0
    mlp: float = 0.0
    layers: int = 0
    scope: str = "layer"

    def __post_init__(self) -> None:
        check_fraction("heads", self.heads)
        check_fraction("mlp", self.mlp)
        check_positive_int("layers", self.layers, allow_zero=True)
        check_choice("scope", self.scope, ("layer", "global"))


def collect_structured_scores(model: nn.Module, batches: list[dict[str, Any]] | None) -> dict[str, list[torch.Tensor]]:
    """Head-group, neuron and block scores of every block (one dense pass over ``batches``)."""
    _, blocks = find_blocks(model)
    layouts = [block_layout(b) for b in blocks]
    watched = {}
    for i, (b, lay) in enumerate(zip(blocks, layouts)):
        watched[f"{i}.o"] = b.get_submodule(lay.o)
        watched[f"{i}.mlp"] = b.get_submodule(lay.mlp_in)
    influence = [torch.zeros(2) for _ in blocks]
    handles = []
    stats: dict[str, Any] = {}
    if batches:
        for i, b in enumerate(blocks):
            def hook(_m, args, kwargs, out, _i=i):
                h_in = args[0] if args else kwargs["hidden_states"]
                influence[_i] += block_influence(h_in, block_output(out))
            handles.append(b.register_forward_hook(hook, with_kwargs=True))
        try:
            with collect_input_stats(watched, gram=False) as stats, torch.no_grad():
                for batch in batches:
                    model(**batch)
        finally:
            for h in handles:
                h.remove()
    heads, neurons, blocks_score = [], [], []
    for i, (b, lay) in enumerate(zip(blocks, layouts)):
        norm_o = stats[f"{i}.o"].sq_norm if stats else None
        norm_m = stats[f"{i}.mlp"].sq_norm if stats else None
        _, n_kv = head_counts(b, lay)
        heads.append(group_scores(column_scores(weight_2d(watched[f"{i}.o"]), norm_o), n_kv))
        neurons.append(column_scores(weight_2d(watched[f"{i}.mlp"]), norm_m))
        blocks_score.append(influence[i][0] / max(influence[i][1].item(), 1.0))
    return {"heads": heads, "neurons": neurons, "blocks": blocks_score}


def _lowest(scores: list[torch.Tensor], fraction: float, scope: str) -> dict[int, list[int]]:
    if fraction == 0:
        return {}
    if scope == "layer":
        out = {}
        for i, s in enumerate(scores):
            k = min(int(round(fraction * s.numel())), s.numel() - 1)
            out[i] = torch.argsort(s)[:k].tolist()
        return out
    flat = torch.cat([s / s.sum().clamp_min(1e-12) for s in scores])  # normalised per block
    owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
    local = torch.cat([torch.arange(s.numel()) for s in scores])
    chosen: dict[int, list[int]] = {i: [] for i in range(len(scores))}
    for j in torch.argsort(flat)[: int(round(fraction * flat.numel()))].tolist():
        i = int(owner[j])
        if len(chosen[i]) < scores[i].numel() - 1:
            chosen[i].append(int(local[j]))
    return chosen


def structured_prune(model: nn.Module, batches: list[dict[str, Any]] | None, config: StructuredConfig) -> dict[str, Any]:
    """Remove the lowest-scoring heads, neurons and blocks in place; return the plan.

    Returns:
        ``{"heads": {block: [groups]}, "mlp": {block: [neurons]}, "layers": [blocks]}``
        (indices refer to the model as it was before the call).
    """
    scores = collect_structured_scores(model, batches)
    plan = {
        "heads": _lowest(scores["heads"], config.heads, config.scope),
        "mlp": _lowest(scores["neurons"], config.mlp, config.scope),
        "layers": [],
    }
    if config.layers:
        if not batches:
            from prunekit.errors import ConfigError

            raise ConfigError("removing whole layers needs calibration batches (block influence)")
        order = torch.argsort(torch.stack(scores["blocks"])).tolist()
        plan["layers"] = sorted(order[: config.layers])
    if plan["heads"]:
        prune_heads(model, plan["heads"])
    if plan["mlp"]:
        prune_mlp_neurons(model, plan["mlp"])
    if plan["layers"]:
        remove_layers(model, plan["layers"])
    return plan
