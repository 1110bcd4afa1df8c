"""Head counts follow a removal wherever they live: attributes of submodules, held configs."""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig

from prunekit.llm.structured.heads_attrs import HeadCounts, new_value, size_attributes


def test_new_value_by_name_and_value():
    old, new = HeadCounts(8, 4, 8), HeadCounts(6, 3, 8)
    assert new_value("num_heads", 8, old, new) == 6
    assert new_value("num_attn_heads", 8, old, new) == 6          # ProphetNet
    assert new_value("linear_num_heads", 8, old, new) == 6         # Bailing's linear attention
    assert new_value("num_key_value_heads", 4, old, new) == 3
    assert new_value("qkv_dim", 64, old, new) == 48                # heads x head_dim
    assert new_value("all_head_size", 64, old, new) == 48
    assert new_value("head_dim", 8, old, new) is None              # equal to the head count, but a size
    assert new_value("hidden_size", 64, old, new) is None          # the residual width never follows
    assert new_value("num_heads", 12, old, new) is None            # another module's count
    assert new_value("num_key_value_groups", 2, old, new) is None  # whole groups go: ratio unchanged
    assert new_value("is_causal", True, old, new) is None


def test_multi_query_keeps_its_key_value_head_and_updates_the_ratio():
    old, new = HeadCounts(8, 1, 8), HeadCounts(6, 1, 8)
    assert new_value("num_key_value_groups", 8, old, new, shared_kv=True) == 6
    assert new_value("num_kv_heads", 1, old, new, shared_kv=True) is None


class _Bias(nn.Module):
    def __init__(self, heads: int):
        super().__init__()
        self.num_heads = heads
        self.table = nn.Parameter(torch.zeros(4, heads))


class _Attention(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.num_heads, self.head_dim, self.qkv_dim = 8, 8, 64
        self.bias = _Bias(8)                      # a submodule keeping its own count (Inkling)
        self.o_proj = nn.Linear(64, 64)


def test_size_attributes_walks_submodules_and_copies_the_config():
    config = LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=8, head_dim=8)
    att = _Attention(config)
    out = size_attributes(att, HeadCounts(8, 8, 8), HeadCounts(6, 6, 8))
    found = {(type(owner).__name__, name): value for owner, name, value in out}
    assert found[("_Attention", "num_heads")] == 6
    assert found[("_Attention", "qkv_dim")] == 48
    assert found[("_Bias", "num_heads")] == 6
    held = found[("_Attention", "config")]
    assert (held.num_attention_heads, held.num_key_value_heads, held.hidden_size) == (6, 6, 64)
    assert config.num_attention_heads == 8       # the model's own config is not touched
    assert ("Linear", "in_features") not in found


def test_a_head_count_on_the_key_value_side_follows_the_key_value_heads():
    """Inkling 2's short convolution on k_proj keeps ``num_heads`` = key/value heads (4 of 8 query heads)."""
    old, new = HeadCounts(8, 4, 8, 4), HeadCounts(6, 3, 8, 3)
    assert new_value("num_heads", 4, old, new) == 3
    assert new_value("num_heads", 8, old, new) == 6
    assert new_value("num_heads", 4, old, new, shared_kv=True) is None
    assert new_value("num_heads", 5, old, new) is None


def test_inkling2_full_attention_layer_loses_key_value_heads_in_its_short_convolution():
    import sys
    from pathlib import Path

    from prunekit.llm.structured import StructuredConfig, structured_prune

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build, example_ids

    model = build("inkling2_text")
    assert "hybrid" in model.config.layer_types  # a full-attention layer with the short convolution
    batches = [{"input_ids": example_ids(length=16)}]
    structured_prune(model, batches, StructuredConfig(heads=0.25))
    convs = [m for n, m in model.named_modules() if n.endswith("k_proj.sconv") and hasattr(m, "weight_proj")]
    assert convs  # the dynamic one: its weight_proj has num_heads x kernel rows
    for conv in convs:
        assert conv.weight_proj.out_features == conv.num_heads * conv.conv_kernel_size
    with torch.no_grad():
        assert model(**batches[0]).logits.shape[-1] == model.config.vocab_size
