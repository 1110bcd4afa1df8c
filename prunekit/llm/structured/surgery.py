"""Physically remove attention heads, MLP neurons and whole blocks from transformers models.

The result stays a normal transformers model (same classes, smaller tensors). After
each operation the config is updated (:func:`sync_config`): uniform shapes go into the
standard fields; per-layer widths the config cannot express go into
``config.prunekit_layer_shapes``, which :func:`prunekit.llm.structured.load_pruned` reads.
Inputs are validated before anything changes, so a failed call leaves the model as it was.

Example:
    >>> # prune_heads(model, {0: [1]})      # remove head (or KV group) 1 of block 0
    >>> # prune_mlp_neurons(model, {1: [0, 5, 7]})
    >>> # remove_layers(model, [3])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from prunekit.errors import ModelError, UnsupportedOpError
from prunekit.llm.blocks import _is_conv1d, find_blocks
from prunekit.llm.structured.families import block_layout, head_counts, head_dim, intermediate_size
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD

_MLP_FIELDS = {"llama": "intermediate_size", "bert": "intermediate_size", "vit": "intermediate_size",
               "opt": "ffn_dim", "gpt2": "n_inner"}


def _slice(module: nn.Module, index: torch.Tensor, side: str) -> None:
    """Keep ``index`` of the output rows (``side="out"``) or input columns (``"in"``)."""
    conv = _is_conv1d(module)
    w = module.weight.data
    out_dim = 1 if conv else 0
    dim = out_dim if side == "out" else 1 - out_dim
    module.weight = nn.Parameter(w.index_select(dim, index).clone(), requires_grad=module.weight.requires_grad)
    if side == "out" and getattr(module, "bias", None) is not None:
        module.bias = nn.Parameter(module.bias.data.index_select(0, index).clone(),
                                   requires_grad=module.bias.requires_grad)
    n = int(index.numel())
    if conv:
        if side == "out":
            module.nf = n
        else:
            module.nx = n
    elif side == "out":
        module.out_features = n
    else:
        module.in_features = n


def _check_indices(kind: str, layer: int, remove: Iterable[int], total: int) -> list[int]:
    drop = sorted(set(int(i) for i in remove))
    bad = [i for i in drop if not 0 <= i < total]
    if bad:
        raise ModelError(f"block {layer}: {kind} index {bad[0]} out of range (it has {total})")
    if len(drop) >= total:
        raise ModelError(f"block {layer}: cannot remove all {total} {kind}; keep at least one "
                         "(remove the whole block with remove_layers instead)")
    return drop


def head_groups(block: nn.Module) -> int:
    """Number of removable attention units: KV groups (grouped-query attention) or heads."""
    return head_counts(block, block_layout(block))[1]


def prune_heads(model: nn.Module, remove: Mapping[int, Iterable[int]]) -> None:
    """Remove attention heads in place: ``{block_index: [unit, ...]}``.

    With grouped-query attention a unit is a key/value group together with its query
    heads (``num_heads / num_kv_heads`` of them); otherwise a unit is one head.
    """
    path, blocks = find_blocks(model)
    plan = {}
    for layer, units in remove.items():
        if not 0 <= int(layer) < len(blocks):
            raise ModelError(f"block index {layer} out of range; {path} has {len(blocks)} blocks")
        block = blocks[int(layer)]
        n_heads, n_kv = head_counts(block, block_layout(block, f"{path}.{layer}"))
        plan[int(layer)] = _check_indices("head groups", int(layer), units, n_kv)
    for layer, drop in plan.items():
        if drop:
            _drop_head_groups(blocks[layer], drop)
    sync_config(model)


def _drop_head_groups(block: nn.Module, drop: list[int]) -> None:
    layout = block_layout(block)
    hd = head_dim(block, layout)
    n_heads, n_kv = head_counts(block, layout)
    group = n_heads // n_kv
    keep_groups = [g for g in range(n_kv) if g not in set(drop)]
    q_heads = [g * group + j for g in keep_groups for j in range(group)]
    q_rows = torch.tensor([h * hd + d for h in q_heads for d in range(hd)], dtype=torch.long)
    kv_rows = torch.tensor([g * hd + d for g in keep_groups for d in range(hd)], dtype=torch.long)
    if layout.k is None:  # GPT-2 fused qkv: [q | k | v], each n_heads * hd wide
        width = n_heads * hd
        _slice(block.get_submodule(layout.q), torch.cat([q_rows, q_rows + width, q_rows + 2 * width]), "out")
    else:
        _slice(block.get_submodule(layout.q), q_rows, "out")
        _slice(block.get_submodule(layout.k), kv_rows, "out")
        _slice(block.get_submodule(layout.v), kv_rows, "out")
    _slice(block.get_submodule(layout.o), q_rows, "in")
    attn = block.get_submodule(layout.attention)
    new_heads, new_kv = len(q_heads), len(keep_groups)
    for attr, value in (("num_heads", new_heads), ("num_attention_heads", new_heads),
                        ("num_key_value_heads", new_kv), ("all_head_size", new_heads * hd),
                        ("split_size", new_heads * hd)):
        if hasattr(attn, attr):
            setattr(attn, attr, value)


def prune_mlp_neurons(model: nn.Module, remove: Mapping[int, Iterable[int]]) -> None:
    """Remove MLP intermediate neurons in place: ``{block_index: [neuron, ...]}``."""
    path, blocks = find_blocks(model)
    plan = {}
    for layer, neurons in remove.items():
        if not 0 <= int(layer) < len(blocks):
            raise ModelError(f"block index {layer} out of range; {path} has {len(blocks)} blocks")
        block = blocks[int(layer)]
        size = intermediate_size(block, block_layout(block, f"{path}.{layer}"))
        plan[int(layer)] = (_check_indices("MLP neurons", int(layer), neurons, size), size)
    for layer, (drop, size) in plan.items():
        if not drop:
            continue
        block = blocks[layer]
        layout = block_layout(block)
        dropped = set(drop)
        keep = torch.tensor([j for j in range(size) if j not in dropped], dtype=torch.long)
        for name in layout.mlp_out:
            _slice(block.get_submodule(name), keep, "out")
        _slice(block.get_submodule(layout.mlp_in), keep, "in")
    sync_config(model)


def remove_layers(model: nn.Module, layers: Iterable[int]) -> None:
    """Remove whole transformer blocks in place and renumber the remaining ones."""
    path, blocks = find_blocks(model)
    drop = _check_indices("blocks", -1, layers, len(blocks))
    if getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
        raise UnsupportedOpError(
            "remove_layers: this GPT-2 config scales attention by the layer index "
            "(scale_attn_by_inverse_layer_idx=True), so blocks cannot be renumbered"
        )
    keep = [b for i, b in enumerate(blocks) if i not in set(drop)]
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, nn.ModuleList(keep))
    for new_index, block in enumerate(keep):
        for module in block.modules():
            if hasattr(module, "layer_idx") and isinstance(module.layer_idx, int):
                module.layer_idx = new_index
    config = model.config
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(blocks):
        config.layer_types = [t for i, t in enumerate(layer_types) if i not in set(drop)]
    config.num_hidden_layers = len(keep)
    shapes = getattr(config, LAYER_SHAPES_FIELD, None)
    if shapes and len(shapes) == len(blocks):
        setattr(config, LAYER_SHAPES_FIELD, [s for i, s in enumerate(shapes) if i not in set(drop)])
    sync_config(model)


def layer_shapes(model: nn.Module) -> list[dict[str, int]]:
    """Per block: ``num_heads``, ``num_kv_heads``, ``head_dim``, ``intermediate_size``."""
    _, blocks = find_blocks(model)
    out = []
    for block in blocks:
        layout = block_layout(block)
        heads, kv = head_counts(block, layout)
        out.append({"num_heads": heads, "num_kv_heads": kv, "head_dim": head_dim(block, layout),
                    "intermediate_size": intermediate_size(block, layout)})
    return out


def sync_config(model: nn.Module) -> None:
    """Write the model's current shapes into its config (standard fields when possible)."""
    config = model.config
    shapes = layer_shapes(model)
    family = block_layout(find_blocks(model)[1][0]).family
    needs_field = False
    widths = {s["intermediate_size"] for s in shapes}
    if len(widths) == 1:
        setattr(config, _MLP_FIELDS[family], widths.pop())
    else:
        needs_field = True
    heads = {(s["num_heads"], s["num_kv_heads"], s["head_dim"]) for s in shapes}
    if len(heads) == 1 and family == "llama":
        h, kv, hd = heads.pop()
        config.num_attention_heads, config.num_key_value_heads, config.head_dim = h, kv, hd
    elif len(heads) > 1 or shapes[0]["num_heads"] != config.num_attention_heads:
        needs_field = True
    if needs_field:
        setattr(config, LAYER_SHAPES_FIELD, shapes)
    elif hasattr(config, LAYER_SHAPES_FIELD):
        delattr(config, LAYER_SHAPES_FIELD)


def apply_layer_shapes(model: nn.Module, shapes: list[dict[str, int]]) -> None:
    """Shrink a freshly built model to recorded per-block shapes (keeps the first units)."""
    _, blocks = find_blocks(model)
    if len(shapes) != len(blocks):
        raise ModelError(f"{LAYER_SHAPES_FIELD} lists {len(shapes)} blocks but the config builds {len(blocks)}")
    heads, mlp = {}, {}
    for i, (block, shape) in enumerate(zip(blocks, shapes)):
        layout = block_layout(block)
        _, n_kv = head_counts(block, layout)
        if shape["num_kv_heads"] < n_kv:
            heads[i] = range(shape["num_kv_heads"], n_kv)
        size = intermediate_size(block, layout)
        if shape["intermediate_size"] < size:
            mlp[i] = range(shape["intermediate_size"], size)
    if heads:
        prune_heads(model, heads)
    if mlp:
        prune_mlp_neurons(model, mlp)
