"""Physically remove attention units, MLP neurons and whole blocks from transformers models.

The result stays a normal transformers model (same classes, smaller tensors). Every
removal is one request to the generic surgery primitive
:func:`prunekit.surgery.apply.apply_keep` (the same slicing, registry ``sync`` rules and
all-or-nothing snapshot as ``prunekit prune``), built from each block's
:class:`~prunekit.llm.structured.layout.Layout` (:func:`block_layouts`: the name table
as a fast path, else a probe of the block) turned into engine groups
(:mod:`~prunekit.llm.structured.groups`) and the engine's keep builder
(:func:`prunekit.structured.keep.keep_request`). After each operation the config is updated
(:func:`~prunekit.llm.structured.shapes.sync_config`). Inputs are validated before
anything changes, so a failed call leaves the model as it was.

Example:
    >>> # prune_heads(model, {0: [1]})      # remove head (or KV group) 1 of block 0
    >>> # prune_mlp_neurons(model, {1: [0, 5, 7]})
    >>> # remove_layers(model, [3])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from prunekit.errors import ModelError, UnsupportedOpError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.layers import block_prefix, find_layers
from prunekit.llm.structured.groups import head_group, mlp_group, removal_keep
from prunekit.llm.structured.heads_attrs import HeadCounts, conv_group_attributes, size_attributes
from prunekit.llm.structured.heads_check import checked_apply
from prunekit.llm.structured.heads_partition import check_balanced
from prunekit.llm.structured.heads_routed import routed_size_attributes
from prunekit.llm.structured.layer_build import _prefixes, adopt_block_attributes, adopt_config_attributes
from prunekit.llm.structured.layer_fields import (
    layer_config,
    meta_build,
    removal_plan,
)
from prunekit.llm.structured.layer_index import renumber_layer_indices
from prunekit.llm.structured.layer_packed import packed_keep
from prunekit.llm.structured.layout import AttentionLayout, Layout, keep_indices
from prunekit.llm.structured.per_layer import set_field
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD
from prunekit.surgery.apply import apply_keep


def block_layouts(model: nn.Module, indices: Iterable[int] | None = None) -> dict[int, Layout]:
    """The :class:`Layout` of each block (all blocks, or ``indices``)."""
    from prunekit.llm.structured.discover import discover_layout
    from prunekit.llm.structured.families import table_layout
    from prunekit.llm.structured.heads_followers import has_extra_tensors, with_followers

    path, blocks = find_layers(model)
    chosen = range(len(blocks)) if indices is None else indices
    out = {}
    for i in chosen:
        if not 0 <= int(i) < len(blocks):
            raise ModelError(f"block index {i} out of range; {path} has {len(blocks)} blocks")
        layout = table_layout(blocks[int(i)], model.config)
        if layout is None or has_extra_tensors(blocks[int(i)], layout):  # names match, the attention differs
            layout = discover_layout(model, int(i))
        out[int(i)] = with_followers(model, blocks[int(i)], layout)
    return out


def check_indices(kind: str, layer: int, remove: Iterable[int], total: int) -> list[int]:
    """Sorted unique indices, validated against ``total`` (one must stay)."""
    drop = sorted(set(int(i) for i in remove))
    bad = [i for i in drop if not 0 <= i < total]
    if bad:
        raise ModelError(f"block {layer}: {kind} index {bad[0]} out of range (it has {total})")
    if len(drop) >= total:
        raise ModelError(f"block {layer}: cannot remove all {total} {kind}; keep at least one "
                         "(remove the whole block with remove_layers instead)")
    return drop


def _per_attention(remove: Mapping[Any, Iterable[int]], layouts: dict[int, Layout], path: str
                   ) -> list[tuple[int, AttentionLayout | None, list[int]]]:
    """``(block, attention, units)`` for every attention ``remove`` names: a block index names
    each of the block's attentions (the same units), ``(block, k)`` its attention ``k``
    (:attr:`Layout.attentions`). Every attention of one block must lose as many units (one
    config head count builds them all), else a :class:`ModelError` names the block."""
    out: dict[tuple[int, int], list[int]] = {}
    for key, units in remove.items():
        layer, k = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        attentions = layouts[layer].attentions or (None,)
        if k is not None and not 0 <= k < len(attentions):
            raise ModelError(f"{path}.{layer}: attention {k} out of range (the block has {len(attentions)})")
        for j in range(len(attentions)) if k is None else [k]:
            out[(layer, j)] = sorted(set(out.get((layer, j), [])) | {int(u) for u in units})
    for layer in sorted({layer for layer, _ in out}):
        attentions = layouts[layer].attentions
        counts = {a.module: len(out.get((layer, j), [])) for j, a in enumerate(attentions)}
        if len(set(counts.values())) > 1:
            raise ModelError(f"{path}.{layer}: its attentions {sorted(counts)} share one head count in the config; "
                             f"remove as many units from each (asked {counts}), e.g. with a block index key")
    return [(layer, (layouts[layer].attentions or (None,))[j], units) for (layer, j), units in out.items()]


def prune_heads(model: nn.Module, remove: Mapping[Any, Iterable[int]], *, sync: bool = True) -> None:
    """Remove attention heads in place: ``{block_index: [unit, ...]}``.

    With grouped-query attention a unit is a key/value group together with its query
    heads (``num_heads / num_kv_heads`` of them); otherwise a unit is one head. A block
    with several attentions (:attr:`Layout.attentions`, entries of one module list) loses
    the units from each; ``{(block_index, k): [unit, ...]}`` names attention ``k`` alone
    (every attention of a block must lose as many). With ``sync=False`` the config is left
    for one :func:`sync_config` after several removals.
    """
    from prunekit.llm.structured.alibi import alibi_heads, set_alibi_heads
    from prunekit.llm.structured.shapes import sync_config

    path, blocks = find_layers(model)
    layouts = block_layouts(model, sorted({int(i[0] if isinstance(i, tuple) else i) for i in remove}))
    removals: list = []
    attrs: list = []
    alibi: list = []
    asked = _per_attention(remove, layouts, path)
    for layer, att, units in asked:
        if att is None:
            if list(units) and layouts[int(layer)].attention_error:
                raise UnsupportedOpError(f"{layouts[int(layer)].attention_error}; its heads cannot be removed "
                                         "(its MLP, experts and whole layers still can)")
            if list(units):
                raise UnsupportedOpError(f"{path}.{layer} ({type(blocks[int(layer)]).__name__}): this block's "
                                         "token mixer has no attention heads (an SSM / recurrent mixer)")
            continue
        drop = check_indices("head groups", int(layer), units, att.n_units)
        if not drop:
            continue
        if att.partitions:  # units split between parallel projections: as many from each
            check_balanced(drop, att.partitions, f"{block_prefix(path, blocks, int(layer))}.{att.module}")
        block, prefix = blocks[int(layer)], block_prefix(path, blocks, int(layer))
        removals.append((head_group(prefix, block, att), drop))  # q/k/v rows, o columns, followers
        module = block.get_submodule(att.module)
        n_units = att.n_units - len(drop)
        n_heads = n_units * att.heads_per_unit
        before = HeadCounts(att.n_heads, att.n_kv_heads, att.head_dim, att.n_units)
        after = HeadCounts(n_heads, 1 if att.shared else n_units, att.head_dim, n_units)
        cut = {p[len(att.module) + 1:] for p in [*att.rows, att.o] if p.startswith(att.module + ".")}
        cut |= {p.rpartition(".")[0][len(att.module) + 1:] for p in att.params if p.startswith(att.module + ".")}
        if att.o:
            attrs.extend(size_attributes(module, before, after, bool(att.shared), cut))  # counts wherever they live
        else:  # routed heads: the sizes a rebuild of the module holds (names alone are ambiguous there)
            attrs.extend(routed_size_attributes(model, module, before, after))
        attrs.extend(conv_group_attributes(block, att.params, drop))  # grouped convs over head channels
        if att.alibi:
            old = alibi_heads(module, att.n_heads)
            kept_units = [u for u in range(att.n_units) if u not in set(drop)]
            alibi.append((module, [old[u * att.heads_per_unit + j] for u in kept_units
                                   for j in range(att.heads_per_unit)], old))
    keep = removal_keep(model, removals)
    if not keep:
        return
    first = {layer: units for layer, att, units in asked if att is None or att is layouts[layer].attention}
    _shared_heads(model, path, layouts, first, keep, attrs)

    def set_slopes():
        for module, heads, _ in alibi:
            set_alibi_heads(module, heads)
        return lambda: [set_alibi_heads(module, old) for module, _, old in alibi]

    where = f"{path} blocks {sorted({layer for layer, _, _ in asked})}: removing attention heads"
    checked_apply(model, keep, attrs, where, set_slopes)
    if sync:
        sync_config(model)


def _shared_heads(model: nn.Module, path: str, layouts: dict, remove: Mapping[int, Iterable[int]],
                  keep: dict, attrs: list) -> None:
    """Slice per-head tensors outside the blocks (:mod:`.heads_shared`): the same units must go everywhere."""
    from prunekit.llm.structured.heads_shared import common_head_count, shared_head_tensors

    n_heads = common_head_count(layouts)
    shared = shared_head_tensors(model, path, n_heads) if n_heads else {}
    if not shared:
        return
    every = block_layouts(model)
    if common_head_count(every) != n_heads:
        raise UnsupportedOpError(f"{', '.join(sorted(shared))} (outside {path}) is indexed by heads, but the "
                                 "blocks' head counts differ; cannot slice it for all of them")
    with_heads = sorted(i for i, lay in every.items() if lay.attention is not None)
    drops = {tuple(sorted(set(int(u) for u in remove.get(i, ())))) for i in with_heads}
    if len(drops) != 1:
        asked = {i: sorted(int(u) for u in remove.get(i, ())) for i in with_heads}
        raise UnsupportedOpError(f"{', '.join(sorted(shared))} (outside {path}) is indexed by the heads of every "
                                 f"block: remove the same head groups from every block, not {asked}")
    drop = list(drops.pop())
    att = every[with_heads[0]].attention
    kept = keep_indices(tuple(tuple(range(u * att.heads_per_unit, (u + 1) * att.heads_per_unit))
                              for u in range(att.n_units)), drop)
    for name, dim in shared.items():
        keep[name] = {dim: kept}
    n_units = att.n_units - len(drop)
    before = HeadCounts(att.n_heads, att.n_kv_heads, att.head_dim, att.n_units)
    after = HeadCounts(n_units * att.heads_per_unit, 1 if att.shared else n_units, att.head_dim, n_units)
    for owner in sorted({name.rpartition(".")[0] for name in shared}):
        module = model.get_submodule(owner)
        attrs.extend(a for a in size_attributes(module, before, after, bool(att.shared)) if a[0] is module)


def prune_mlp_neurons(model: nn.Module, remove: Mapping[int, Iterable[int]], *, sync: bool = True) -> None:
    """Remove dense-MLP intermediate neurons in place: ``{block_index: [neuron, ...]}``."""
    from prunekit.llm.structured.shapes import sync_config

    path, blocks = find_layers(model)
    layouts = block_layouts(model, [int(i) for i in remove])
    removals: list = []
    for layer, neurons in remove.items():
        mlp = layouts[int(layer)].mlp
        if mlp is None:
            raise UnsupportedOpError(f"{path}.{layer}: no dense MLP was found in this block")
        drop = check_indices("MLP neurons", int(layer), neurons, mlp.size)
        if not drop:
            continue
        block, prefix = blocks[int(layer)], block_prefix(path, blocks, int(layer))
        removals.append((mlp_group(prefix, block, mlp), drop))  # up/gate rows, down columns, followers
    keep = removal_keep(model, removals)
    if keep:
        checked_apply(model, keep, [], f"{path} blocks {sorted(int(i) for i in remove)}: removing MLP neurons")
        if sync:
            sync_config(model)


def remove_layers(model: nn.Module, layers: Iterable[int], *, sync: bool = True) -> None:
    """Remove whole transformer blocks in place and renumber the remaining ones.

    Per-layer tensors packed outside the blocks (one ``k``-wide chunk per layer, Gemma 3n /
    Gemma 4's per-layer input embeddings) lose the removed layers' chunks in the same call
    (:mod:`~prunekit.llm.structured.layer_packed`); a removal the config cannot rebuild
    raises before anything changes."""
    from prunekit.llm.structured.per_layer import global_access

    with global_access(model.config):  # a heterogeneous config (per-layer overrides) read field by field
        _remove_layers(model, layers, sync)


def _remove_layers(model: nn.Module, layers: Iterable[int], sync: bool) -> None:
    from prunekit.llm.structured.shapes import sync_config

    path, blocks = find_blocks(model)
    drop = check_indices("blocks", -1, layers, len(blocks))
    if getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
        raise UnsupportedOpError(
            "remove_layers: this GPT-2 config scales attention by the layer index "
            "(scale_attn_by_inverse_layer_idx=True), so blocks cannot be renumbered"
        )
    lists, updates = removal_plan(model, drop)  # the block list, and a layer's parallel parts (XLM)
    if updates is None:
        raise UnsupportedOpError(
            f"remove_layers: removing {path} {drop} gives a model that {type(model.config).__name__} cannot "
            "rebuild (no per-layer config field explains the change, e.g. a first block built differently); "
            "remove other blocks")
    before = meta_build(model, model.config)  # what the config builds now, for adopt_config_attributes
    packed = packed_keep(model, _prefixes(lists), len(blocks), drop, updates)  # per-layer chunks outside
    if packed:  # sliced before the blocks change (apply_keep undoes its own partial slicing)
        apply_keep(model, packed)
    kept_old = [i for i in range(len(blocks)) if i not in set(drop)]
    for list_path in lists:
        keep = [b for i, b in enumerate(model.get_submodule(list_path)) if i not in set(drop)]
        parent_path, _, attr = list_path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, nn.ModuleList(keep))
        for new_index, (old_index, block) in enumerate(zip(kept_old, keep)):
            renumber_layer_indices(block, old_index, new_index)  # layer_idx, RWKV's layer_id, ...
    config = model.config
    for name, value in updates.items():  # layer counts, per-layer lists and patterns (layer_fields.py)
        try:
            set_field(layer_config(config), name, value)
        except Exception:  # a count the config derives from a per-layer list (checked in layer_fields)
            pass
    adopt_config_attributes(model, before, tuple(lists))  # outside the blocks: what a reload builds
    adopt_block_attributes(model, tuple(lists), drop, len(blocks))  # per-layer copies, solved floats
    shapes = getattr(config, LAYER_SHAPES_FIELD, None)
    if shapes and len(shapes) == len(blocks):
        setattr(config, LAYER_SHAPES_FIELD, [s for i, s in enumerate(shapes) if i not in set(drop)])
    if sync:
        sync_config(model)
