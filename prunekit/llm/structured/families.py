"""The name table: a fast path to the layout of the block types prunekit has met before.

A :class:`BlockLayout` names, for one transformer block, the projections whose output
rows are grouped by attention head (query, key, value), the projection whose input
columns are (attention output), the MLP projections whose outputs are the
intermediate neurons and the one that reads them. Layouts are found from the module
names, so they work for Llama / Qwen2 / Mistral, GPT-2, OPT, BERT and ViT (and models
that copy their naming). :func:`table_layout` turns a match into a
:class:`~prunekit.llm.structured.layout.Layout`; blocks that match no entry are probed
instead (:mod:`prunekit.llm.structured.discover`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.structured.layout import AttentionLayout, Layout, MLPLayout, contiguous_units


@dataclass(frozen=True)
class BlockLayout:
    """Module paths inside one block (relative to the block)."""

    family: str
    attention: str            # the attention module whose head counts are updated
    q: str                    # query projection (GPT-2: the fused c_attn)
    k: str | None             # key projection (None for GPT-2's fused c_attn)
    v: str | None
    o: str                    # output projection (input columns grouped by head)
    mlp_out: tuple[str, ...]  # projections producing the intermediate neurons
    mlp_in: str               # projection reading the intermediate neurons


_LAYOUTS: tuple[BlockLayout, ...] = (
    BlockLayout("llama", "self_attn", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                "self_attn.o_proj", ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
    BlockLayout("opt", "self_attn", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                "self_attn.out_proj", ("fc1",), "fc2"),
    BlockLayout("gpt2", "attn", "attn.c_attn", None, None, "attn.c_proj", ("mlp.c_fc",), "mlp.c_proj"),
    BlockLayout("bert", "attention.self", "attention.self.query", "attention.self.key",
                "attention.self.value", "attention.output.dense", ("intermediate.dense",), "output.dense"),
    BlockLayout("vit", "attention", "attention.q_proj", "attention.k_proj", "attention.v_proj",
                "attention.o_proj", ("mlp.fc1",), "mlp.fc2"),
    BlockLayout("vit", "attention.attention", "attention.attention.query", "attention.attention.key",
                "attention.attention.value", "attention.output.dense", ("intermediate.dense",),
                "output.dense"),
)


def block_layout(block: nn.Module, where: str = "block") -> BlockLayout:
    """The table entry matching ``block``'s module names; UnsupportedOpError when none does."""
    layout = _name_match(block)
    if layout is None:
        raise UnsupportedOpError(
            f"{where} ({type(block).__name__}): the name table knows Llama/Qwen2/Mistral, GPT-2, "
            "OPT, BERT and ViT blocks; this block's module names match none of them (use "
            "prunekit.llm.structured.surgery.block_layouts, which probes the block)"
        )
    return layout


def head_dim(block: nn.Module, layout: BlockLayout, config: object = None) -> int:
    from prunekit.llm.structured.discover import head_dim_of

    attn = block.get_submodule(layout.attention)
    for attr in ("head_dim", "attention_head_size"):
        if hasattr(attn, attr):
            return int(getattr(attn, attr))
    try:
        return head_dim_of(attn, config)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        raise UnsupportedOpError(f"{type(attn).__name__} has no head_dim / attention_head_size and the "
                                 "config gives no hidden_size / num_attention_heads") from None


def head_counts(block: nn.Module, layout: BlockLayout, config: object = None) -> tuple[int, int]:
    """``(query heads, key/value heads)`` currently in the block."""
    from prunekit.llm.blocks import weight_2d

    hd = head_dim(block, layout, config)
    q_rows = weight_2d(block.get_submodule(layout.q)).shape[0]
    if layout.k is None:  # fused qkv
        return q_rows // (3 * hd), q_rows // (3 * hd)
    kv_rows = weight_2d(block.get_submodule(layout.k)).shape[0]
    return q_rows // hd, kv_rows // hd


def intermediate_size(block: nn.Module, layout: BlockLayout) -> int:
    from prunekit.llm.blocks import weight_2d

    return int(weight_2d(block.get_submodule(layout.mlp_in)).shape[1])


def _name_match(block: nn.Module) -> BlockLayout | None:
    names = {name for name, _ in block.named_modules()}
    for layout in _LAYOUTS:
        needed = [layout.attention, layout.q, layout.o, layout.mlp_in, *layout.mlp_out]
        needed += [p for p in (layout.k, layout.v) if p]
        if all(p in names for p in needed):
            return layout
    return None


def table_layout(block: nn.Module, config: object = None) -> Layout | None:
    """The block's :class:`Layout` from the name table (the fast path), or None if no entry matches."""
    from prunekit.llm.blocks import weight_2d

    lay = _name_match(block)
    if lay is None:
        return None
    hd = head_dim(block, lay, config)
    n_heads, n_kv = head_counts(block, lay, config)
    per = n_heads // n_kv
    fused_rows = int(weight_2d(block.get_submodule(lay.q)).shape[0])
    if lay.k is None and fused_rows != 3 * int(weight_2d(block.get_submodule(lay.o)).shape[1]):
        return None  # fused rows are not [q | k | v] of equal widths (GPT-BigCode multi-query): probe the block
    if lay.k is None:  # fused [q | k | v], each n_heads * hd wide
        width = n_heads * hd
        rows = {lay.q: tuple(tuple(i + s * width for s in range(3) for i in range(h * hd, (h + 1) * hd))
                             for h in range(n_heads))}
    else:  # a value head may be wider than a query/key head (MiMo-V2 v_head_dim): widths from the weights
        v_rows = int(weight_2d(block.get_submodule(lay.v)).shape[0])
        rows = {lay.q: contiguous_units(n_kv, per * hd), lay.k: contiguous_units(n_kv, hd),
                lay.v: contiguous_units(n_kv, v_rows // n_kv)}
    o_cols = int(weight_2d(block.get_submodule(lay.o)).shape[1])
    attention = AttentionLayout(lay.attention, lay.o, rows, contiguous_units(n_kv, o_cols // n_kv), per, hd)
    size = int(weight_2d(block.get_submodule(lay.mlp_in)).shape[1])
    mlp = MLPLayout(lay.mlp_in, {p: contiguous_units(size, 1) for p in lay.mlp_out})
    return Layout(lay.family, attention, mlp)
