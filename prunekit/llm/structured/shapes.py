"""Per-block widths of a structurally pruned model, and the config that rebuilds them.

:func:`layer_shapes` lists, per block, ``num_heads``, ``num_kv_heads`` (attention units),
``head_dim``, ``intermediate_size`` and, where present, ``num_experts``,
``expert_intermediate_size`` and ``alibi_heads`` (the original heads whose ALiBi slopes a
block keeps). :func:`sync_config` writes them into the model's config: when every block
has the same widths it tries the config's own fields (heads, key/value heads,
intermediate sizes, expert counts, found by name and value) and keeps them only if a
model built from that config on the meta device has exactly the pruned tensor shapes,
so plain ``from_pretrained`` reloads it. Otherwise the list goes into the documented
field ``prunekit_layer_shapes`` and :func:`apply_layer_shapes` (called by ``load_pruned``)
shrinks a freshly built model to it.

Example:
    >>> # sync_config(model); model.config.num_attention_heads
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.llm.layers import find_layers
from prunekit.llm.structured.layer_fields import meta_shapes
from prunekit.llm.structured.per_layer import global_access, live_values, set_field
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD

_MISSING = object()
_FIELDS = (  # (regex on a config field name, layer_shapes keys whose values it may take)
    (re.compile(r"^(num_attention_heads|n_head|num_heads|n_heads)$"), ("num_heads",)),
    (re.compile(r"key_value|kv_heads|query_groups"), ("num_kv_heads",)),
    (re.compile(r"^(num_local_experts|num_experts|n_routed_experts)$"), ("num_experts",)),
    (re.compile(r"intermediate|ffn_dim|n_inner|ffn_hidden|inner_size"),
     ("intermediate_size", "expert_intermediate_size")),
)


def layer_shapes(model: nn.Module) -> list[dict[str, Any]]:
    """Per block: head counts, head size, MLP width and, for MoE blocks, expert count and width."""
    from prunekit.llm.structured.alibi import alibi_heads
    from prunekit.llm.structured.surgery import block_layouts

    _, blocks = find_layers(model)
    out = []
    for i, lay in block_layouts(model).items():
        att = lay.attention
        shape: dict[str, Any] = {"num_heads": att.n_heads if att else None,
                                 "num_kv_heads": att.n_kv_heads if att else None,
                                 "head_dim": att.head_dim if att else None,
                                 "intermediate_size": lay.mlp.size if lay.mlp else None}
        if lay.experts is not None:
            shape["num_experts"] = lay.experts.n_experts
            shape["expert_intermediate_size"] = lay.experts.size
        if att is not None and att.alibi:
            shape["alibi_heads"] = alibi_heads(blocks[i].get_submodule(att.module), att.n_heads)
        out.append(shape)
    return out


def _mismatches(model: nn.Module, config: Any) -> int:
    """How many tensors of a model built from ``config`` differ in shape from ``model``'s."""
    got = meta_shapes(model, config)
    if got is None:
        return 1 << 30
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return sum(1 for k in want.keys() | got.keys() if want.get(k) != got.get(k))


def _uniform_config(model: nn.Module, shape: dict[str, Any], alibi: bool) -> Any | None:
    """A copy of the config whose standard fields build exactly the pruned shapes, or None."""
    trial = copy.deepcopy(model.config)
    setattr(trial, LAYER_SHAPES_FIELD, None)
    best = _mismatches(model, trial)
    # Qwen2 derives head_dim from the head count
    if shape.get("head_dim") is not None and getattr(trial, "head_dim", None) != shape["head_dim"]:
        old = getattr(trial, "head_dim", None)
        trial.head_dim = shape["head_dim"]
        if _mismatches(model, trial) > best:
            trial.head_dim = old
    fields = trial.to_dict()
    for pattern, keys in _FIELDS:
        if alibi and keys[0] in ("num_heads", "num_kv_heads"):
            continue  # ALiBi slopes follow the config's head count: it must stay
        for name, value in fields.items():
            if best == 0:
                return _keep_head_dim(model, trial)
            if not pattern.search(name) or not (value is None or (isinstance(value, int) and value > 0)):
                continue
            for key in keys:
                new = shape.get(key)
                if new is None or new == getattr(trial, name, None):
                    continue
                old = getattr(trial, name, None)
                setattr(trial, name, new)
                m = _mismatches(model, trial)
                if m < best:
                    best = m
                    break
                setattr(trial, name, old)
    return _keep_head_dim(model, trial) if best == 0 else None


def _keep_head_dim(model: nn.Module, trial: Any) -> Any:
    """``trial`` with the original ``head_dim`` back when no tensor shape needs the new one.

    A head size no weight depends on may still size a buffer (multi-head latent attention's
    rotary part: ``head_dim`` is ``qk_rope_head_dim`` there, while the attention layout's per-head
    width is ``v_head_dim``), so an unneeded change would alter the reloaded model's outputs."""
    old = getattr(model.config, "head_dim", _MISSING)
    new = getattr(trial, "head_dim", _MISSING)
    if old is _MISSING or new == old:
        return trial
    trial.head_dim = old
    if _mismatches(model, trial) != 0:
        trial.head_dim = new
    return trial


def _merged(shapes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One shape for every block, where blocks without a part (no attention in a Mamba
    block, no dense MLP in an MoE block) agree with the others; None if widths differ.

    Example:
        >>> _merged([{"num_heads": 4, "intermediate_size": None}, {"num_heads": None, "intermediate_size": 8}])
        {'num_heads': 4, 'intermediate_size': 8}
    """
    out: dict[str, Any] = {}
    for shape in shapes:
        for key, value in shape.items():
            if value is None:
                out.setdefault(key, None)
            elif out.get(key) is None:
                out[key] = value
            elif out[key] != value:
                return None
    return out


def sync_config(model: nn.Module) -> None:
    """Write the model's current shapes into its config (standard fields when they suffice)."""
    config = model.config
    shapes = layer_shapes(model)
    alibi = any("alibi_heads" in s for s in shapes)
    plain = [{k: v for k, v in s.items() if k != "alibi_heads"} for s in shapes]
    pruned_alibi = any(s.get("alibi_heads") != list(range(len(s.get("alibi_heads", [])))) or
                       len(s["alibi_heads"]) != s["num_heads"] for s in shapes if "alibi_heads" in s)
    trial = None
    merged = _merged(plain)
    if not pruned_alibi and merged is not None:
        trial = _uniform_config(model, merged, alibi)
    if trial is not None:
        now = live_values(config)
        for name, value in live_values(trial).items():
            if name != LAYER_SHAPES_FIELD and now.get(name, _MISSING) != value:
                set_field(config, name, value)
        if hasattr(config, LAYER_SHAPES_FIELD):
            delattr(config, LAYER_SHAPES_FIELD)
        return
    setattr(config, LAYER_SHAPES_FIELD, shapes)


def apply_layer_shapes(model: nn.Module, shapes: list[dict[str, Any]]) -> None:
    """Shrink a freshly built model to recorded per-block shapes (keeps the first units)."""
    with global_access(model.config):
        _apply_layer_shapes(model, shapes)


def _apply_layer_shapes(model: nn.Module, shapes: list[dict[str, Any]]) -> None:
    """:func:`apply_layer_shapes` itself."""
    from prunekit.llm.structured.alibi import set_alibi_heads
    from prunekit.llm.structured.experts import remove_experts, shrink_expert_neurons
    from prunekit.llm.structured.surgery import block_layouts, prune_heads, prune_mlp_neurons

    _, blocks = find_layers(model)
    if len(shapes) != len(blocks):
        raise ModelError(f"{LAYER_SHAPES_FIELD} lists {len(shapes)} blocks but the config builds {len(blocks)}")
    layouts = block_layouts(model)
    heads, mlp, experts, neurons = {}, {}, {}, {}
    for i, shape in enumerate(shapes):
        lay = layouts[i]
        if lay.attention is not None:
            units = shape["num_heads"] if lay.attention.shared else shape["num_kv_heads"]
            if units < lay.attention.n_units:
                heads[i] = range(units, lay.attention.n_units)
        if lay.mlp is not None and (shape.get("intermediate_size") or lay.mlp.size) < lay.mlp.size:
            mlp[i] = range(shape["intermediate_size"], lay.mlp.size)
        if lay.experts is not None:
            n = shape.get("num_experts", lay.experts.n_experts)
            if n < lay.experts.n_experts:
                experts[i] = range(n, lay.experts.n_experts)
            k = shape.get("expert_intermediate_size", lay.experts.size)
            if k < lay.experts.size:
                neurons[i] = torch.arange(k).expand(n, k)
    if heads:
        prune_heads(model, heads)
        extra = {i: range(shapes[i]["num_heads"], lay.attention.n_units)
                 for i, lay in block_layouts(model, list(heads)).items()
                 if lay.attention.shared and shapes[i]["num_heads"] < lay.attention.n_units}
        if extra:  # a group left alone is multi-query: its query heads are then removed one by one
            prune_heads(model, extra)
    if mlp:
        prune_mlp_neurons(model, mlp)
    if experts:
        remove_experts(model, experts)
    if neurons:
        shrink_expert_neurons(model, neurons)
    for i, shape in enumerate(shapes):
        if "alibi_heads" in shape:
            set_alibi_heads(blocks[i].get_submodule(layouts[i].attention.module), shape["alibi_heads"])
    setattr(model.config, LAYER_SHAPES_FIELD, shapes)
